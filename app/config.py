"""Configuration: embedded defaults, then environment variables (and .env), then a test mapping."""

import os
from pathlib import Path

from dotenv import load_dotenv
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
    # outlast one slow send (MAIL_TIMEOUT, more than once); a worker that died holds its
    # messages this long before another takes them over.
    "DELIVERY_CLAIM_SECONDS": 600,
    "EMAIL_CHECK_DELIVERABILITY": False,
    "EMAIL_DNS_TIMEOUT": 3,
    "CONTACT_RATE_LIMIT": "5 per minute; 20 per hour",
    "CONTACT_MAX_BODY_BYTES": 64 * 1024,
    "FORM_MIN_SECONDS": 3,
    "FORM_MAX_AGE_SECONDS": 2 * 3600,
    "RATELIMIT_STORAGE_URI": "memory://",
    # If Redis is down, count in memory rather than refuse every form post.
    "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
    "RATELIMIT_SWALLOW_ERRORS": True,
    "TRUSTED_PROXIES": 0,
    "RATELIMIT_HEADERS_ENABLED": True,
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
}

# Environment variable -> (config key, kind). Most share their config key's name.
ENVIRONMENT = {
    "APP_ENV": ("APP_ENV", str),
    "SECRET_KEY": ("SECRET_KEY", str),
    "DATABASE_URL": ("SQLALCHEMY_DATABASE_URI", str),
    "DATABASE_CONNECT_TIMEOUT": ("DATABASE_CONNECT_TIMEOUT", int),
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
    "RATELIMIT_STORAGE_URI": ("RATELIMIT_STORAGE_URI", str),
    "TRUSTED_PROXIES": ("TRUSTED_PROXIES", int),
    "LOGIN_RATE_LIMIT": ("LOGIN_RATE_LIMIT", str),
    "LOGIN_ACCOUNT_RATE_LIMIT": ("LOGIN_ACCOUNT_RATE_LIMIT", str),
    "LOG_FORMAT": ("LOG_FORMAT", str),
    "LOG_LEVEL": ("LOG_LEVEL", str),
    "SENTRY_DSN": ("SENTRY_DSN", str),
    "READY_MAX_OUTBOX_AGE_SECONDS": ("READY_MAX_OUTBOX_AGE_SECONDS", int),
}

DEVELOPMENT_SECRET_KEY = "development-only-not-secret"  # noqa: S105 - refused in production


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
        load_dotenv(Path(app.root_path).parent / ".env")
        app.config.update(from_environment(os.environ))
    else:
        app.config.update(test_config)
    apply_derived_defaults(app)
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
    apply_log_settings(config)


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


def limit_connect_time(config):
    """libpq's connect_timeout, unless the URL or the engine options set one."""
    options = dict(config.get("SQLALCHEMY_ENGINE_OPTIONS", {}))
    connect_args = dict(options.get("connect_args", {}))
    if "connect_timeout" not in make_url(config["SQLALCHEMY_DATABASE_URI"]).query:
        connect_args.setdefault("connect_timeout", config["DATABASE_CONNECT_TIMEOUT"])
    config["SQLALCHEMY_ENGINE_OPTIONS"] = {**options, "connect_args": connect_args}


def check_production(config):
    if not config["PRODUCTION"]:
        return
    if not config["SECRET_KEY"] or config["SECRET_KEY"] == DEVELOPMENT_SECRET_KEY:
        raise ConfigurationError(
            "SECRET_KEY is not set. In production (APP_ENV=production) set SECRET_KEY to a long "
            'random value, e.g. python -c "import secrets; print(secrets.token_hex(32))".'
        )
    if not config["SITE_URL"]:
        raise ConfigurationError(
            "SITE_URL is not set. In production set it to the site's public https:// address."
        )
    if not config["SITE_URL"].startswith("https://"):
        raise ConfigurationError("SITE_URL must be an https:// address in production.")
