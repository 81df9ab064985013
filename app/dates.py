"""Every way the site writes a date or a time, always in UTC.

Each formatter converts an aware datetime to UTC first, takes a naive one to be UTC already
(as everything stored here is), and writes None as "" so an unset time leaves its place blank.
"""

import math
from datetime import UTC, datetime
from functools import wraps

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
# (seconds in one, shown from how many seconds, short name, long name), the largest first.
# Months only from 60 days on: 45 days reads better as "45 days" than "1 month".
UNITS = (
    (365 * DAY, 365 * DAY, "y", "year"),
    (30 * DAY, 60 * DAY, "mo", "month"),
    (DAY, DAY, "d", "day"),
    (HOUR, HOUR, "h", "hour"),
    (MINUTE, MINUTE, "min", "minute"),
)


def in_utc(moment):
    """The same instant in UTC; a date, which has no time zone, stays as it is."""
    if not isinstance(moment, datetime):
        return moment
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def formatter(write):
    @wraps(write)
    def format_moment(moment, *args, **kwargs):
        return "" if moment is None else write(in_utc(moment), *args, **kwargs)

    return format_moment


@formatter
def iso(moment):
    """For machines (feeds, sitemaps, `<time datetime>`): "2026-12-02T14:05:09Z"."""
    return f"{moment:%Y-%m-%dT%H:%M:%S}Z"


@formatter
def long_date(moment):
    """A date for readers, as on a post: "2 December 2026"."""
    return f"{moment.day} {moment:%B %Y}"


@formatter
def stamp(moment):
    """A moment for staff, in pages, emails and the command line: "02 Dec 2026, 14:05 UTC"."""
    return f"{moment:%d %b %Y, %H:%M} UTC"


@formatter
def spreadsheet(moment):
    """A CSV cell that spreadsheets read as a date and time: "2026-12-02 14:05:09"."""
    return f"{moment:%Y-%m-%d %H:%M:%S}"


@formatter
def relative(moment, now, *, short=False):
    """How long before `now`: "just now", "1 minute ago", "3 hours ago", "5 months ago";
    `short` for a narrow column: "now", "1 min", "3 h", "5 mo"."""
    passed = largest_unit(max(0, int((in_utc(now) - moment).total_seconds())))
    if passed is None:
        return "now" if short else "just now"
    count, short_name, long_name = passed
    if short:
        return f"{count} {short_name}"
    return f"{count} {long_name}{'' if count == 1 else 's'} ago"


def largest_unit(seconds):
    """(count, short name, long name) in the largest unit shown for `seconds`, or None."""
    for size, shown_from, short_name, long_name in UNITS:
        if seconds >= shown_from:
            return seconds // size, short_name, long_name
    return None


def wait_in_words(seconds):
    """How long to wait, rounded up: "1 minute", "14 minutes", "3 hours"."""
    minutes = math.ceil(seconds / MINUTE)
    if minutes > 120:
        return f"{math.ceil(minutes / 60)} hours"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
