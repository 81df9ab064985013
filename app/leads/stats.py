"""Numbers for the staff dashboard, aggregated by the database.

The charts cover the last WEEKS ISO weeks (Monday to Sunday, UTC), this week included, and
leave spam out. Each query is bounded by an index: created_at for the window, status for
the counts and the latest leads, (status, next_attempt_at) for the outbox.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Date, case, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import contains_eager, load_only
from sqlalchemy.sql.functions import FunctionElement

from app.extensions import db
from app.leads.models import LEAD_STATUSES, Lead, OutboxMessage
from app.types import utcnow

WEEKS = 12
TOP_GROUPS = 8
LATEST_LEADS = 10
FAILED_SHOWN = 20
# A pending message is overdue once its attempt is this late: the sender has stalled.
OVERDUE_AFTER = timedelta(minutes=15)


class UTCDay(FunctionElement):
    """The UTC calendar day of a UTCDateTime column, whatever the connection's time zone."""

    type = Date()
    inherit_cache = True


@compiles(UTCDay)
def compile_utc_day(element, compiler, **kw):
    # SQLite (and the default) stores UTCDateTime as naive UTC text: its date part is the day.
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(UTCDay, "postgresql")
def compile_utc_day_postgresql(element, compiler, **kw):
    return f"CAST(timezone('UTC', {compiler.process(element.clauses, **kw)}) AS DATE)"


@dataclass(frozen=True)
class Week:
    start: date
    leads: int
    spam: int


@dataclass(frozen=True)
class Group:
    label: str
    leads: int
    kind: str = "value"  # "value", or "other" / "empty" for the buckets made here


@dataclass(frozen=True)
class Notifications:
    failed: list[OutboxMessage]
    failed_total: int
    overdue: int


def week_starts(today, weeks=WEEKS):
    """The Mondays of the last `weeks` ISO weeks, oldest first, ending with today's week."""
    this_monday = today - timedelta(days=today.weekday())
    return [this_monday - timedelta(weeks=back) for back in range(weeks - 1, -1, -1)]


def window(now=None):
    """The Mondays of the window, and its start and (excluded) end as UTC datetimes."""
    starts = week_starts((now or utcnow()).astimezone(UTC).date())
    end = starts[-1] + timedelta(weeks=1)
    return starts, midnight(starts[0]), midnight(end)


def midnight(day):
    return datetime.combine(day, time(), tzinfo=UTC)


def leads_per_week(now=None):
    """Leads (spam apart) per week of the window; a week without any counts zero."""
    starts, start, end = window(now)
    day = UTCDay(Lead.created_at)
    spam = func.sum(case((Lead.status == "spam", 1), else_=0))
    rows = db.session.execute(
        select(day, func.count(), spam)
        .where(Lead.created_at >= start, Lead.created_at < end)
        .group_by(day)
    )
    leads, spam_leads = dict.fromkeys(starts, 0), dict.fromkeys(starts, 0)
    for lead_day, total, spam_count in rows:
        monday = lead_day - timedelta(days=lead_day.weekday())
        leads[monday] += total - spam_count
        spam_leads[monday] += spam_count
    return [Week(monday, leads[monday], spam_leads[monday]) for monday in starts]


def leads_by(column, empty_label, now=None, limit=TOP_GROUPS):
    """The `limit` commonest non-empty values of a Lead column in the window (spam apart),
    then "(other)" for the rest and `empty_label` for leads without a value."""
    _, start, end = window(now)
    leads = func.count().label("lead_count")
    rows = db.session.execute(
        select(column, leads, func.sum(func.count()).over())
        .where(Lead.created_at >= start, Lead.created_at < end, Lead.status != "spam")
        .group_by(column)
        # The empty value first, whatever its size, then the commonest: one scan for all.
        .order_by((column == "").desc(), leads.desc(), column)
        .limit(limit + 1)
    ).all()
    if not rows:
        return []
    empty = sum(count for value, count, _ in rows if value == "")
    groups = [Group(value, count) for value, count, _ in rows if value != ""][:limit]
    other = int(rows[0][2]) - empty - sum(group.leads for group in groups)
    if other:
        groups.append(Group("(other)", other, "other"))
    if empty:
        groups.append(Group(empty_label, empty, "empty"))
    return groups


def leads_by_source_page(now=None):
    return leads_by(Lead.source_path, "(unknown)", now)


def leads_by_utm_source(now=None):
    return leads_by(Lead.utm_source, "(none)", now)


def status_counts():
    """Every status with its number of leads, in pipeline order."""
    rows = dict(db.session.execute(select(Lead.status, func.count()).group_by(Lead.status)).all())
    return {status: rows.get(status, 0) for status in LEAD_STATUSES}


def latest_new_leads(limit=LATEST_LEADS):
    query = (
        select(Lead)
        .options(load_only(Lead.reference, Lead.name, Lead.company, Lead.created_at))
        .where(Lead.status == "new")
        .order_by(Lead.created_at.desc(), Lead.id.desc())
        .limit(limit)
    )
    return db.session.scalars(query).all()


def notifications(now=None, limit=FAILED_SHOWN):
    """The latest failed notifications, how many failed in all, and how many are overdue."""
    failed = db.session.scalars(
        select(OutboxMessage)
        .join(OutboxMessage.lead)
        .options(contains_eager(OutboxMessage.lead).load_only(Lead.reference, Lead.name))
        .where(OutboxMessage.status == "failed")
        .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        .limit(limit)
    ).all()
    overdue_before = (now or utcnow()) - OVERDUE_AFTER
    failed_total, overdue = db.session.execute(
        select(
            func.count().filter(OutboxMessage.status == "failed"),
            func.count().filter(
                OutboxMessage.status == "pending", OutboxMessage.next_attempt_at < overdue_before
            ),
        ).where(OutboxMessage.status.in_(("failed", "pending")))
    ).one()
    return Notifications(failed, failed_total, overdue)
