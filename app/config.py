"""Configuration: embedded defaults, then environment variables (and .env), then a test mapping."""

import os
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import load_dotenv
from flask.helpers import get_load_dotenv
from limits import parse_many
from sqlalchemy.engine import make_url

DEFAULTS = {
    "APP_ENV": "development",
    "SECRET_KEY": None,
    # Unset in development: http://127.0.0.1:PORT, the address `make run` serves.
    "SITE_URL": None,
    "PORT": 5000,
    "SITE_NAME": "Catalyst Science Marketing",
    "SITE_TAGLINE": "Science and technology, turned into marketing that works.",
    "SITE_EMAIL": "hello@example.com",
    "SITE_ADDRESS": "1 Innovation Way, Cambridge",
    "SQLALCHEMY_DATABASE_URI": None,
    # Seconds to wait for PostgreSQL to answer a new connection: a host that has gone silent
    # must not hold a visitor's form post (the lead goes to the spool instead).
    "DATABASE_CONNECT_TIMEOUT": 5,
    # Seconds the form's database work may take (app/database_deadline.py) before the lead
    # goes to the spool instead: a host that stops answering must not hold the visitor.
    "DATABASE_FORM_TIMEOUT": 8,
    "MAIL_SERVER": None,
    "MAIL_PORT": 25,
    "MAIL_USE_TLS": False,
    "MAIL_USE_SSL": False,
    "MAIL_USERNAME": None,
    "MAIL_PASSWORD": None,
    "MAIL_DEFAULT_SENDER": "website@example.com",
    "MAIL_TIMEOUT": 10,
    "MAIL_SUPPRESS_SEND": False,
    "LEADS_NOTIFY_TO": [],
    "LEADS_ACKNOWLEDGE": False,
    "LEADS_DELIVER_IN_PROCESS": None,
    "DELIVERY_MAX_ATTEMPTS": 6,
    "DELIVERY_BACKOFF_SECONDS": 60,
    # A worker's claim on the messages it is sending. Renewed before each send, so it must
    # outlast one slow send (check_delivery_claim); a worker that died holds its messages
    # this long before another takes them over.
    "DELIVERY_CLAIM_SECONDS": 60,
    "EMAIL_CHECK_DELIVERABILITY": False,
    "EMAIL_DNS_TIMEOUT": 3,
    "CONTACT_RATE_LIMIT": "5 per minute; 20 per hour",
    # Every post of the form, valid or not: only a flood reaches it.
    "CONTACT_ATTEMPT_RATE_LIMIT": "30 per minute",
    "CONTACT_MAX_BODY_BYTES": 64 * 1024,
    "FORM_MIN_SECONDS": 3,
    # The Redis every process shares counters in (rate limits), unless RATELIMIT_STORAGE_URI
    # names another store. Production needs one: per-process counts multiply every limit.
    "REDIS_URL": None,
    # Unset: REDIS_URL, or memory:// (each process counts on its own) without it.
    "RATELIMIT_STORAGE_URI": None,
    # Starts every key in that store: sites sharing one Redis keep their counts apart.
    "RATELIMIT_KEY_PREFIX": "",
    # Unset: 0 in development; production must say how many proxies there are (check_production).
    "TRUSTED_PROXIES": None,
    "POSTS_PER_PAGE": 10,
    "PUBLIC_CACHE_SECONDS": 300,
    # Rendered public pages each process keeps (app/caching.py); 0 turns the store off.
    "PAGE_CACHE_SIZE": 500,
    # How often each process asks the database whether any post changed (0: every request).
    "CONTENT_CHECK_SECONDS": 1.0,
    "CONTENT_DIR": None,
    "UPLOAD_FOLDER": None,
    # Where a lead is kept when the database cannot be reached (app/leads/spool.py).
    "LEAD_SPOOL_DIR": None,
    "MAX_COVER_BYTES": 5 * 1024 * 1024,
    # Any request body: a larger one gets 413 unread. The post editor and the contact form
    # set their own per-request caps (app/staff/posts.py, app/leads/protection.py).
    "MAX_CONTENT_LENGTH": 8 * 1024 * 1024,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    # Only the staff area uses a session; public pages never receive the cookie.
    "SESSION_COOKIE_PATH": "/staff",
    "SESSION_COOKIE_NAME": "staff_session",
    "PERMANENT_SESSION_LIFETIME": 12 * 3600,
    "WTF_CSRF_TIME_LIMIT": 12 * 3600,
    "LOGIN_RATE_LIMIT": "10 per minute",
    "LOGIN_ACCOUNT_RATE_LIMIT": "5 per 15 minutes",
    # Werkzeug's scrypt. Not read from the environment: only the test suite sets a cheap one.
    "PASSWORD_HASH_METHOD": "scrypt",
    # Unset: JSON lines in production, readable text elsewhere (app/logs.py).
    "LOG_FORMAT": None,
    "LOG_LEVEL": "INFO",
    "SENTRY_DSN": None,
    # /readyz fails when a notification has waited longer than this to be sent.
    "READY_MAX_OUTBOX_AGE_SECONDS": 900,
    # /readyz warns when a lead has waited in the spool longer than this to be stored.
    "READY_MAX_SPOOL_AGE_SECONDS": 900,
}

# Environment variable -> (config key, kind). Most share their config key's name.
ENVIRONMENT = {
    "APP_ENV": ("APP_ENV", str),
    "SECRET_KEY": ("SECRET_KEY", str),
    "DATABASE_URL": ("SQLALCHEMY_DATABASE_URI", str),
    "DATABASE_CONNECT_TIMEOUT": ("DATABASE_CONNECT_TIMEOUT", int),
    "DATABASE_FORM_TIMEOUT": ("DATABASE_FORM_TIMEOUT", float),
    "SITE_URL": ("SITE_URL", str),
    "PORT": ("PORT", int),
    "SITE_NAME": ("SITE_NAME", str),
    "SITE_TAGLINE": ("SITE_TAGLINE", str),
    "SITE_EMAIL": ("SITE_EMAIL", str),
    "SITE_ADDRESS": ("SITE_ADDRESS", str),
    "PUBLIC_CACHE_SECONDS": ("PUBLIC_CACHE_SECONDS", int),
    "PAGE_CACHE_SIZE": ("PAGE_CACHE_SIZE", int),
    "CONTENT_CHECK_SECONDS": ("CONTENT_CHECK_SECONDS", float),
    "CONTENT_DIR": ("CONTENT_DIR", str),
    "UPLOAD_FOLDER": ("UPLOAD_FOLDER", str),
    "LEAD_SPOOL_DIR": ("LEAD_SPOOL_DIR", str),
    "MAX_COVER_BYTES": ("MAX_COVER_BYTES", int),
    "MAX_CONTENT_LENGTH": ("MAX_CONTENT_LENGTH", int),
    "MAIL_SERVER": ("MAIL_SERVER", str),
    "MAIL_PORT": ("MAIL_PORT", int),
    "MAIL_USE_TLS": ("MAIL_USE_TLS", bool),
    "MAIL_USE_SSL": ("MAIL_USE_SSL", bool),
    "MAIL_USERNAME": ("MAIL_USERNAME", str),
    "MAIL_PASSWORD": ("MAIL_PASSWORD", str),
    "MAIL_DEFAULT_SENDER": ("MAIL_DEFAULT_SENDER", str),
    "MAIL_TIMEOUT": ("MAIL_TIMEOUT", float),
    "LEADS_NOTIFY_TO": ("LEADS_NOTIFY_TO", list),
    "LEADS_ACKNOWLEDGE": ("LEADS_ACKNOWLEDGE", bool),
    "LEADS_DELIVER_IN_PROCESS": ("LEADS_DELIVER_IN_PROCESS", bool),
    "DELIVERY_MAX_ATTEMPTS": ("DELIVERY_MAX_ATTEMPTS", int),
    "DELIVERY_BACKOFF_SECONDS": ("DELIVERY_BACKOFF_SECONDS", int),
    "DELIVERY_CLAIM_SECONDS": ("DELIVERY_CLAIM_SECONDS", int),
    "EMAIL_CHECK_DELIVERABILITY": ("EMAIL_CHECK_DELIVERABILITY", bool),
    "CONTACT_RATE_LIMIT": ("CONTACT_RATE_LIMIT", str),
    "CONTACT_ATTEMPT_RATE_LIMIT": ("CONTACT_ATTEMPT_RATE_LIMIT", str),
    "FORM_MIN_SECONDS": ("FORM_MIN_SECONDS", int),
    "REDIS_URL": ("REDIS_URL", str),
    "RATELIMIT_STORAGE_URI": ("RATELIMIT_STORAGE_URI", str),
    "RATELIMIT_KEY_PREFIX": ("RATELIMIT_KEY_PREFIX", str),
    "TRUSTED_PROXIES": ("TRUSTED_PROXIES", int),
    "LOGIN_RATE_LIMIT": ("LOGIN_RATE_LIMIT", str),
    "LOGIN_ACCOUNT_RATE_LIMIT": ("LOGIN_ACCOUNT_RATE_LIMIT", str),
    "LOG_FORMAT": ("LOG_FORMAT", str),
    "LOG_LEVEL": ("LOG_LEVEL", str),
    "SENTRY_DSN": ("SENTRY_DSN", str),
    "READY_MAX_OUTBOX_AGE_SECONDS": ("READY_MAX_OUTBOX_AGE_SECONDS", int),
    "READY_MAX_SPOOL_AGE_SECONDS": ("READY_MAX_SPOOL_AGE_SECONDS", int),
}

DEVELOPMENT_SECRET_KEY = "development-only-not-secret"  # noqa: S105 - refused in production
APP_ENVIRONMENTS = ("development", "production")
MIN_SECRET_KEY_BYTES = 32
RANDOM_HEX_COMMAND = 'python -c "import secrets; print(secrets.token_hex(32))"'
RATE_LIMITS = (
    "CONTACT_RATE_LIMIT",
    "CONTACT_ATTEMPT_RATE_LIMIT",
    "LOGIN_RATE_LIMIT",
    "LOGIN_ACCOUNT_RATE_LIMIT",
)
REDIS_TIMEOUTS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
REDIS_SCHEMES = ("redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster")


class ConfigurationError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


def parse(variable, kind, raw):
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigurationError(f"{variable} must be true or false, not {raw!r}.")
    if kind is list:
        return [item.strip() for item in raw.split(",") if item.strip()]
    try:
        return kind(raw)
    except ValueError as error:
        raise ConfigurationError(f"{variable} is malformed: {error}") from error


def from_environment(environ):
    return {
        key: parse(variable, kind, environ[variable])
        for variable, (key, kind) in ENVIRONMENT.items()
        if environ.get(variable)
    }


def load(app, test_config=None):
    """Fill app.config: defaults, then the environment (a .env file included), then test_config."""
    app.config.update(DEFAULTS)
    if test_config is None:
        if get_load_dotenv():
            load_dotenv(Path(app.root_path).parent / ".env")
        app.config.update(from_environment(os.environ))
    else:
        app.config.update(test_config)
    apply_derived_defaults(app)
    check_timeouts(app.config)
    check_production(app.config)


def apply_derived_defaults(app):
    config = app.config
    instance = Path(app.instance_path)
    if not config["SQLALCHEMY_DATABASE_URI"]:
        instance.mkdir(parents=True, exist_ok=True)
        config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{instance / 'site.db'}"
    if config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        limit_connect_time(config)
    if not config["UPLOAD_FOLDER"]:
        config["UPLOAD_FOLDER"] = str(instance / "uploads")
    if not config["LEAD_SPOOL_DIR"]:
        config["LEAD_SPOOL_DIR"] = str(instance / "spool")
    if not config["CONTENT_DIR"]:
        config["CONTENT_DIR"] = str(Path(app.root_path).parent / "content")
    config["APP_ENV"] = resolve_app_env(config["APP_ENV"])
    config["PRODUCTION"] = config["APP_ENV"] == "production"
    if not config["SITE_URL"] and not config["PRODUCTION"]:
        config["SITE_URL"] = f"http://127.0.0.1:{config['PORT']}"
    config["SITE_URL"] = (config["SITE_URL"] or "").rstrip("/")
    if config["PRODUCTION"]:
        config["SESSION_COOKIE_SECURE"] = True
    if config["LEADS_DELIVER_IN_PROCESS"] is None:
        config["LEADS_DELIVER_IN_PROCESS"] = not (config["PRODUCTION"] or config.get("TESTING"))
    if not config["SECRET_KEY"] and not config["PRODUCTION"]:
        config["SECRET_KEY"] = DEVELOPMENT_SECRET_KEY
    if config["TRUSTED_PROXIES"] is None and not config["PRODUCTION"]:
        config["TRUSTED_PROXIES"] = 0
    config["RATELIMIT_STORAGE_URI"] = rate_limit_store(config)
    if config["RATELIMIT_STORAGE_URI"].startswith("redis"):
        # A Redis that stops answering must not hold a visitor's form post: each call to it
        # gives up after this long, and the post goes on as the code says it does then.
        config.setdefault("RATELIMIT_STORAGE_OPTIONS", REDIS_TIMEOUTS)
    check_rate_limits(config)
    apply_log_settings(config)


def resolve_app_env(raw):
    name = raw.strip().lower()
    if name not in APP_ENVIRONMENTS:
        raise ConfigurationError(
            f"APP_ENV must be one of {', '.join(APP_ENVIRONMENTS)} (in any case), not {raw!r}."
        )
    return name


def check_rate_limits(config):
    for name in RATE_LIMITS:
        try:
            parse_many(config[name])
        except ValueError as error:
            raise ConfigurationError(
                f"{name} must be rate limits such as '5 per minute; 20 per hour', "
                f"not {config[name]!r} ({error})."
            ) from error


def rate_limit_store(config):
    """The one store every process shares counters in: RATELIMIT_STORAGE_URI, else REDIS_URL."""
    redis_url = config["REDIS_URL"]
    if redis_url and urlsplit(redis_url).scheme not in REDIS_SCHEMES:
        raise ConfigurationError(
            f"REDIS_URL must be a Redis URL such as redis://127.0.0.1:6379/0, not {redis_url!r}."
        )
    return config["RATELIMIT_STORAGE_URI"] or redis_url or "memory://"


LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def apply_log_settings(config):
    log_format = resolve_log_format(config["LOG_FORMAT"], config["PRODUCTION"])
    level = config["LOG_LEVEL"].upper()
    if level not in LOG_LEVELS:
        raise ConfigurationError(
            f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {config['LOG_LEVEL']!r}."
        )
    config["LOG_FORMAT"], config["LOG_LEVEL"] = log_format, level


def resolve_log_format(raw, production):
    log_format = (raw or ("json" if production else "text")).lower()
    if log_format not in LOG_FORMATS:
        raise ConfigurationError(f"LOG_FORMAT must be json or text, not {raw!r}.")
    return log_format


# libpq's TCP settings for a host that stops acknowledging what is sent (a partition): an
# idle pooled connection is found dead within about 25 s (keepalives), and a call waiting
# for an answer gives up after 10 s without an acknowledgement (tcp_user_timeout, in ms).
POSTGRES_TCP_SETTINGS = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}


def limit_connect_time(config):
    """libpq's connect_timeout and TCP settings, unless the URL or the engine options set
    them."""
    options = dict(config.get("SQLALCHEMY_ENGINE_OPTIONS", {}))
    connect_args = dict(options.get("connect_args", {}))
    in_url = make_url(config["SQLALCHEMY_DATABASE_URI"]).query
    defaults = {"connect_timeout": config["DATABASE_CONNECT_TIMEOUT"], **POSTGRES_TCP_SETTINGS}
    for name, value in defaults.items():
        if name not in in_url:
            connect_args.setdefault(name, value)
    config["SQLALCHEMY_ENGINE_OPTIONS"] = {**options, "connect_args": connect_args}


# One message waits for up to four SMTP replies (MAIL FROM, RCPT TO, DATA, the end of the
# message), each for up to MAIL_TIMEOUT; one more MAIL_TIMEOUT covers writing the message
# and recording it as sent.
MAIL_TIMEOUTS_PER_CLAIM = 5


def check_timeouts(config):
    for name in ("DATABASE_FORM_TIMEOUT", "MAIL_TIMEOUT"):
        if config[name] <= 0:
            raise ConfigurationError(f"{name} must be more than 0 seconds, not {config[name]!r}.")
    check_delivery_claim(config)


def check_delivery_claim(config):
    """A claim that ends during a send lets another worker send the same message again."""
    timeout, lease = config["MAIL_TIMEOUT"], config["DELIVERY_CLAIM_SECONDS"]
    if lease < MAIL_TIMEOUTS_PER_CLAIM * timeout:
        raise ConfigurationError(
            f"DELIVERY_CLAIM_SECONDS ({lease}) must be at least {MAIL_TIMEOUTS_PER_CLAIM} times "
            f"MAIL_TIMEOUT ({timeout:g}), so at least {MAIL_TIMEOUTS_PER_CLAIM * timeout:g}: "
            "sending one message waits for up to four SMTP replies, each for up to "
            "MAIL_TIMEOUT, and a claim that ends during a send lets another worker send the "
            "message again. Raise DELIVERY_CLAIM_SECONDS or lower MAIL_TIMEOUT."
        )


def check_production(config):
    if not config["PRODUCTION"]:
        return
    check_secret_key(config["SECRET_KEY"])
    check_shared_rate_limit_store(config["RATELIMIT_STORAGE_URI"])
    check_trusted_proxies(config["TRUSTED_PROXIES"])
    if not config["SITE_URL"]:
        raise ConfigurationError(
            "SITE_URL is not set. In production set it to the site's public https:// address."
        )
    if not config["SITE_URL"].startswith("https://"):
        raise ConfigurationError("SITE_URL must be an https:// address in production.")


def check_secret_key(secret_key):
    if not secret_key:
        raise ConfigurationError(
            "SECRET_KEY is not set. In production (APP_ENV=production) set SECRET_KEY to a "
            f"random value of at least {MIN_SECRET_KEY_BYTES} bytes; generate one with: "
            f"{RANDOM_HEX_COMMAND}"
        )
    length = len(secret_key.encode())
    if length < MIN_SECRET_KEY_BYTES:
        raise ConfigurationError(
            f"SECRET_KEY is too short ({length} bytes). In production it must be a random "
            f"value of at least {MIN_SECRET_KEY_BYTES} bytes; generate one with: "
            f"{RANDOM_HEX_COMMAND}"
        )


def check_trusted_proxies(proxies):
    """No default can be right for every host: guessed wrong, the limits either lump every
    visitor together or let each choose their own address."""
    if proxies is None:
        raise ConfigurationError(
            "TRUSTED_PROXIES is not set. In production set it to the number of reverse proxies "
            "in front of the app that add to X-Forwarded-For: 1 behind one reverse proxy such as "
            "the shipped nginx (one more for each CDN or load balancer in front of it), 0 only "
            "when visitors reach the app directly. Too few, and every visitor seems to come from "
            "the proxy's address: one stranger's wrong logins lock every member of staff out, "
            "and the whole site shares one contact limit. Too many, and a visitor can choose "
            "their own address by sending X-Forwarded-For."
        )
    if proxies < 0:
        raise ConfigurationError(f"TRUSTED_PROXIES must be 0 or more, not {proxies}.")


def check_shared_rate_limit_store(store):
    if store.startswith("memory://"):
        raise ConfigurationError(
            "Rate limits would be counted in memory, separately by each process, so every "
            "worker would multiply them. In production set REDIS_URL (or "
            "RATELIMIT_STORAGE_URI) to a Redis that every process shares, e.g. "
            "REDIS_URL=redis://127.0.0.1:6379/0."
        )
