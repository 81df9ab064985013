"""Counters in the limiter's shared store (Redis in production), for the login throttle and
the contact form. While that store refuses or does not answer (each call gives up after the
timeouts in app/config.py), every call is made on a store in this process's memory instead,
with a warning: the limits then hold per process rather than not at all."""

import logging

from flask import current_app
from limits.storage import MemoryStorage

from app.extensions import limiter, seconds_until, shared_key

log = logging.getLogger("app.limits")

FALLBACK = "counters_fallback"


def first_exceeded(limits, *identifiers):
    """Count one hit against each limit in turn; None if every limit took it, else the seconds
    until the first one that refused lets a hit through again."""
    for item in limits:
        if not strategy("hit", item, *identifiers):
            return seconds_until(strategy("get_window_stats", item, *identifiers).reset_time)
    return None


def strategy(method, *arguments):
    """A method of the limiter's strategy (hit, get_window_stats, clear)."""
    try:
        return getattr(limiter.limiter, method)(*arguments)
    except limiter.storage.base_exceptions as error:
        warn(error)
        return getattr(fallback(), method)(*arguments)


def storage(method, *arguments):
    """A method of the limiter's storage (incr, clear)."""
    try:
        return getattr(limiter.storage, method)(*arguments)
    except limiter.storage.base_exceptions as error:
        warn(error)
        return getattr(fallback().storage, method)(*arguments)


def key(*parts):
    """One storage key from parts, under RATELIMIT_KEY_PREFIX like the limits' own keys."""
    return "/".join(shared_key(*parts))


def warn(error):
    log.warning("Rate limit storage unreachable (%s): counting in this process's memory", error)


def fallback():
    extensions = current_app.extensions
    if FALLBACK not in extensions:
        extensions[FALLBACK] = type(limiter.limiter)(MemoryStorage())
    return extensions[FALLBACK]
