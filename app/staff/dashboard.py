"""The staff dashboard: recent lead flow, where leads come from, what needs attention."""

from datetime import timedelta

from flask import Blueprint, render_template, url_for
from flask_login import current_user

from app import dates
from app.accounts import throttle
from app.leads import spool, stats
from app.staff import charts
from app.types import utcnow

blueprint = Blueprint("dashboard", __name__)

LOCK_OUT_DAYS = 7
SCOPE_LABELS = {
    throttle.ACCOUNT: "This account from this address",
    throttle.ADDRESS: "Any account from this address",
}
KIND_LABELS = {
    "lead_notification": "New lead alert to staff",
    "lead_acknowledgment": "Acknowledgement to the enquirer",
}


@blueprint.get("/")
def index():
    now = utcnow()
    weeks = stats.leads_per_week(now)
    return render_template(
        "staff/dashboard.html",
        weeks=weeks_chart(weeks),
        spam_total=sum(week.spam for week in weeks),
        sources=groups_chart(
            "sources", "Leads by source page", "Source page", stats.leads_by_source_page(now)
        ),
        utm_sources=groups_chart(
            "utm-sources", "Leads by UTM source", "UTM source", stats.leads_by_utm_source(now)
        ),
        statuses=stats.status_counts(),
        latest=stats.latest_new_leads(),
        notifications=stats.notifications(now),
        overdue_minutes=int(stats.OVERDUE_AFTER.total_seconds() // 60),
        weeks_shown=stats.WEEKS,
        kind_labels=KIND_LABELS,
        lock_outs=recent_lock_outs(now) if current_user.is_admin else None,
        lock_out_days=LOCK_OUT_DAYS,
        scope_labels=SCOPE_LABELS,
        spool=spool_backlog() if current_user.is_admin else None,
        now=now,
        lead_url=lead_url,
    )


def spool_backlog():
    """The leads the database has not taken yet, or why the spool cannot be read."""
    try:
        return spool.backlog()
    except OSError as error:
        return error.strerror


def recent_lock_outs(now):
    return throttle.recent_lock_outs(since=now - timedelta(days=LOCK_OUT_DAYS))


def weeks_chart(weeks):
    points = [
        charts.Point(
            label=f"Week starting {dates.long_date(week.start)}",
            value=week.leads,
            axis=axis_label(week.start, previous.start if previous else None),
            kind="current" if week is weeks[-1] else "value",
        )
        for previous, week in zip([None, *weeks], weeks, strict=False)
    ]
    return charts.column_chart(
        "weeks", "Leads per week", describe_weeks(weeks), ("Week starting", "Leads"), points
    )


def axis_label(monday, previous_monday):
    """The day of the month, with the month's name under the first column of each month."""
    if previous_monday and previous_monday.month == monday.month:
        return (str(monday.day),)
    return (str(monday.day), f"{monday:%b}")


def describe_weeks(weeks):
    total = sum(week.leads for week in weeks)
    summary = (
        f"Column chart of leads per week, spam left out, for {len(weeks)} weeks: from the week "
        f"starting Monday {dates.long_date(weeks[0].start)} to this week, which started Monday "
        f"{dates.long_date(weeks[-1].start)} and is still running. {total} leads in all."
    )
    if not total:
        return summary
    busiest = max(reversed(weeks), key=lambda week: week.leads)
    started = dates.long_date(busiest.start)
    return f"{summary} The busiest week started {started}, with {busiest.leads}."


def groups_chart(chart_id, title, heading, groups):
    points = [charts.Point(group.label, group.leads, kind=group.kind) for group in groups]
    listed = "; ".join(f"{group.label}: {group.leads}" for group in groups)
    description = (
        f"Bar chart of leads by {heading.lower()} over the last {stats.WEEKS} weeks, "
        f"spam left out. {listed}."
    )
    return charts.bar_chart(chart_id, title, description, (heading, "Leads"), points)


def lead_url(reference):
    return url_for("staff.leads.show", reference=reference)
