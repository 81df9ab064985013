"""Every date and time format, and the filters that put them in templates."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from app import dates


def zone(hours):
    return timezone(timedelta(hours=hours))


MOMENT = datetime(2026, 12, 2, 14, 5, 9, 123456, tzinfo=UTC)
IN_PARIS = MOMENT.astimezone(zone(1))
IN_NEW_YORK = MOMENT.astimezone(zone(-5))
FORMATS = [
    (dates.iso, "2026-12-02T14:05:09Z"),
    (dates.long_date, "2 December 2026"),
    (dates.stamp, "02 Dec 2026, 14:05 UTC"),
    (dates.spreadsheet, "2026-12-02 14:05:09"),
]


@pytest.mark.parametrize(("write", "expected"), FORMATS)
def test_each_format(write, expected):
    assert write(MOMENT) == expected


@pytest.mark.parametrize(("write", "expected"), FORMATS)
def test_a_time_in_another_zone_is_written_in_utc(write, expected):
    assert write(IN_PARIS) == expected
    assert write(IN_NEW_YORK) == expected


@pytest.mark.parametrize(("write", "expected"), FORMATS)
def test_a_naive_time_is_taken_to_be_utc(write, expected):
    assert write(MOMENT.replace(tzinfo=None)) == expected


@pytest.mark.parametrize("write", [write for write, _ in FORMATS])
def test_none_leaves_the_place_blank(write):
    assert write(None) == ""


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2027, 1, 1, 0, 30, tzinfo=zone(1)), "31 Dec 2026, 23:30 UTC"),
        (datetime(2026, 3, 1, 1, 0, tzinfo=zone(2)), "28 Feb 2026, 23:00 UTC"),
        (datetime(2026, 2, 28, 23, 0, tzinfo=zone(-1)), "01 Mar 2026, 00:00 UTC"),
    ],
)
def test_the_conversion_to_utc_may_change_the_day_month_and_year(moment, expected):
    assert dates.stamp(moment) == expected


def test_a_day_in_the_first_days_of_a_month():
    first = datetime(2027, 1, 1, 9, 0, tzinfo=UTC)
    assert dates.long_date(first) == "1 January 2027"
    assert dates.stamp(first) == "01 Jan 2027, 09:00 UTC"


def test_a_date_without_a_time_is_written_as_it_is():
    assert dates.long_date(date(2026, 12, 2)) == "2 December 2026"


@pytest.mark.parametrize(
    ("seconds", "long", "short"),
    [
        (0, "just now", "now"),
        (59, "just now", "now"),
        (60, "1 minute ago", "1 min"),
        (119, "1 minute ago", "1 min"),
        (120, "2 minutes ago", "2 min"),
        (3599, "59 minutes ago", "59 min"),
        (3600, "1 hour ago", "1 h"),
        (2 * 3600, "2 hours ago", "2 h"),
        (86399, "23 hours ago", "23 h"),
        (86400, "1 day ago", "1 d"),
        (2 * 86400, "2 days ago", "2 d"),
        (59 * 86400, "59 days ago", "59 d"),
        (60 * 86400, "2 months ago", "2 mo"),
        (90 * 86400, "3 months ago", "3 mo"),
        (364 * 86400, "12 months ago", "12 mo"),
        (365 * 86400, "1 year ago", "1 y"),
        (800 * 86400, "2 years ago", "2 y"),
    ],
)
def test_relative_time_in_the_largest_unit_that_has_passed(seconds, long, short):
    moment = MOMENT - timedelta(seconds=seconds)
    assert dates.relative(moment, MOMENT) == long
    assert dates.relative(moment, MOMENT, short=True) == short


def test_relative_time_is_the_same_whatever_the_zones():
    earlier = MOMENT - timedelta(hours=3)
    assert dates.relative(earlier.astimezone(zone(-5)), IN_PARIS) == "3 hours ago"
    assert dates.relative(earlier.replace(tzinfo=None), MOMENT) == "3 hours ago"
    assert dates.relative(earlier, MOMENT.replace(tzinfo=None)) == "3 hours ago"


def test_a_moment_after_now_is_just_now():
    later = MOMENT + timedelta(minutes=5)
    assert dates.relative(later, MOMENT) == "just now"
    assert dates.relative(later, MOMENT, short=True) == "now"


def test_relative_time_of_none_is_blank():
    assert dates.relative(None, MOMENT) == ""


def test_templates_have_one_filter_per_format(app):
    template = app.jinja_env.from_string(
        "{{ m|isodate }} | {{ m|date }} | {{ m|stamp }} | {{ m|relative(now) }}"
        " | {{ m|relative(now, short=True) }}"
    )
    now = MOMENT + timedelta(hours=3)
    assert template.render(m=MOMENT, now=now) == (
        "2026-12-02T14:05:09Z | 2 December 2026 | 02 Dec 2026, 14:05 UTC | 3 hours ago | 3 h"
    )
