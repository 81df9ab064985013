"""Counters in the limiter's shared store (Redis in production), for the login throttle and
the contact form. While that store refuses or does not answer (each call gives up after the
timeouts in app/config.py), every call is made on a store in this process's memory instead,
with a warning: the limits then hold per process rather than not at all. After a failure the
store is left alone for STORE_RETRY_SECONDS, so a silent store costs a visitor one timeout,
not one for every counter their request touches."""

import logging
import time

from flask import current_app
from limits.storage import MemoryStorage

from app.extensions import limiter, seconds_until, shared_key

log = logging.getLogger("app.limits")

FALLBACK = "counters_fallback"
STORE_DOWN_UNTIL = "counters_store_down_until"
STORE_RETRY_SECONDS = 5


def first_exceeded(limits, *identifiers):
    """Count one hit against each limit in turn; None if every limit took it, else the seconds
    until the first one that refused lets a hit through again."""
    for item in limits:
        if not strategy("hit", item, *identifiers):
            return seconds_until(strategy("get_window_stats", item, *identifiers).reset_time)
    return None


def strategy(method, *arguments):
    """A method of the limiter's strategy (hit, get_window_stats, clear)."""
    return attempt(lambda limits: getattr(limits, method)(*arguments))


def storage(method, *arguments):
    """A method of the limiter's storage (incr, clear)."""
    return attempt(lambda limits: getattr(limits.storage, method)(*arguments))


def attempt(operation):
    """operation(strategy) on the shared store's strategy, or on this process's memory while
    that store is away."""
    extensions = current_app.extensions
    if time.monotonic() >= extensions.get(STORE_DOWN_UNTIL, 0):
        try:
            return operation(limiter.limiter)
        except limiter.storage.base_exceptions as error:
            extensions[STORE_DOWN_UNTIL] = time.monotonic() + STORE_RETRY_SECONDS
            log.warning(
                "Rate limit storage unreachable (%s): counting in this process's memory", error
            )
    return operation(fallback())


def key(*parts):
    """One storage key from parts, under RATELIMIT_KEY_PREFIX like the limits' own keys."""
    return "/".join(shared_key(*parts))


def fallback():
    extensions = current_app.extensions
    if FALLBACK not in extensions:
        extensions[FALLBACK] = type(limiter.limiter)(MemoryStorage())
    return extensions[FALLBACK]
