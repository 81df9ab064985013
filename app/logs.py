"""Logs: one line per request on stdout (JSON in production), a request id, errors to Sentry.

What a line may hold: ids, references, paths, status codes, durations, error class names.
Never what a person typed (names, email addresses, messages, passwords): callers pass
only such fields to annotate() and to a logger's `extra`.
"""

import hashlib
import hmac
import logging
import re
import sys
import uuid
from time import perf_counter

from flask import current_app, g, has_request_context, request

from app.config import ConfigurationError, resolve_app_env, resolve_log_format

REQUEST_ID_HEADER = "X-Request-ID"
# A proxy's id is kept when it is a plain token; anything else could forge log lines.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Probes run every few seconds: at info level they would drown the requests that matter.
QUIET_PATHS = frozenset({"/healthz", "/readyz"})

requests_log = logging.getLogger("app.requests")


def init_app(app):
    configure(app.logger, app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
    app.before_request(start_request)
    app.after_request(log_request)
    if app.config["SENTRY_DSN"]:
        init_sentry(app.config)


def configure(logger, log_format, level):
    """The app's loggers write to stdout, where the process runner collects them."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(add_request_id)
    for existing in list(logger.handlers):
        logger.removeHandler(existing)
    logger.addHandler(handler)
    logger.setLevel(level)


def formatter(log_format):
    spec = dict(FORMATTERS[log_format])
    return spec.pop("()")(**spec)


def json_formatter(**options):
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(**options)


# In logging.config.dictConfig's form, so gunicorn's own lines can share them.
FORMATTERS = {
    "json": {
        "()": json_formatter,
        "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
        "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        "defaults": {"request_id": None},
    },
    "text": {
        "()": logging.Formatter,
        "fmt": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        "defaults": {"request_id": "-"},
    },
}


def gunicorn_logconfig(environ):
    """gunicorn's own lines (workers starting, timing out) on stdout in the app's format.
    Its access log stays off: the app logs each request, with its request id."""
    production = resolve_app_env(environ.get("APP_ENV") or "development") == "production"
    log_format = resolve_log_format(environ.get("LOG_FORMAT"), production)
    return {
        "root": {"level": "WARNING", "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "stream": "ext://sys.stdout",
            }
        },
        "formatters": {log_format: dict(FORMATTERS[log_format])},
    }


def add_request_id(record):
    if has_request_context() and "request_id" in g:
        record.request_id = g.request_id
    return True


def start_request():
    g.request_started = perf_counter()
    g.request_id = incoming_request_id() or uuid.uuid4().hex


def incoming_request_id():
    candidate = request.headers.get(REQUEST_ID_HEADER, "")
    return candidate if VALID_REQUEST_ID.fullmatch(candidate) else None


def annotate(**fields):
    """Add fields (ids and references only) to this request's log line."""
    g.setdefault("log_fields", {}).update(fields)


def log_request(response):
    if "request_id" not in g:  # a URL value preprocessor raised before start_request ran
        start_request()
    response.headers[REQUEST_ID_HEADER] = g.request_id
    duration_ms = round((perf_counter() - g.request_started) * 1000, 1)
    fields = {
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "duration_ms": duration_ms,
        **g.get("log_fields", {}),
    }
    level = logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
    requests_log.log(
        level,
        "%s %s %s %s ms",
        request.method,
        request.path,
        response.status_code,
        duration_ms,
        extra=fields,
    )
    return response


def pseudonym(value):
    """A short keyed hash: the same account's lines can be matched, its address not read."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:16]


def init_sentry(config):
    try:
        import sentry_sdk
        from sentry_sdk.integrations.flask import FlaskIntegration
    except ImportError as error:
        raise ConfigurationError(
            'SENTRY_DSN is set but sentry-sdk is not installed: pip install ".[sentry]".'
        ) from error
    sentry_sdk.init(
        dsn=config["SENTRY_DSN"],
        environment=config["APP_ENV"],
        integrations=[FlaskIntegration()],
        # Bodies, cookies, query strings and a frame's variables hold what a visitor typed.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "stack_frame_variables": False,
        },
    )
