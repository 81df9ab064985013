import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta, timezone

import html5lib
import pytest
from sqlalchemy import text

from app.extensions import db
from app.leads import stats
from app.leads.models import OutboxMessage
from app.staff import charts
from app.staff.dashboard import lead_url
from app.types import utcnow

SVG = "{http://www.w3.org/2000/svg}"
# A Wednesday: its ISO week started on Monday 17 March 2025.
NOW = datetime(2025, 3, 19, 12, 0, tzinfo=UTC)
FIRST_MONDAY = date(2024, 12, 30)


def at(*fields, tz=UTC):
    return datetime(*fields, tzinfo=tz)


def chart_svgs(page):
    """Each chart's <svg> element, parsed as XML."""
    markup = re.findall(r'<svg\b[^>]*class="chart__svg".*?</svg>', page, re.S)
    svgs = [ET.fromstring(svg) for svg in markup]
    return {svg.find(f"{SVG}title").get("id").removesuffix("-title"): svg for svg in svgs}


def texts(svg, css_class):
    return ["".join(node.itertext()) for node in svg.iter() if node.get("class") == css_class]


def add_message(lead, **fields):
    message = OutboxMessage(kind="lead_notification", recipient="sales@agency.test", **fields)
    lead.messages.append(message)
    db.session.commit()
    return message


def test_anonymous_is_sent_to_the_login_page(client):
    response = client.get("/staff/")
    assert response.status_code == 302
    assert response.location == "/staff/login?next=/staff/"


def test_weeks_are_iso_weeks_in_utc_with_empty_weeks_as_zero(app, make_lead):
    for moment in [
        at(2024, 12, 29, 23, 59, 59),  # Sunday before the window
        at(2024, 12, 30),  # first Monday, midnight
        at(2025, 1, 5, 23, 59, 59, 999999),  # the Sunday after, a moment before midnight
        at(2025, 1, 6),
        at(2025, 3, 17, 0, 30, tz=timezone(timedelta(hours=1))),  # Sunday 23:30 in UTC
        at(2025, 3, 17),  # this week's Monday
        at(2025, 3, 24),  # next week: not in the window
    ]:
        make_lead(created_at=moment)
    make_lead(created_at=at(2025, 3, 18), status="spam")
    if db.engine.dialect.name == "postgresql":
        # The buckets are UTC days whatever the connection's time zone.
        db.session.execute(text("SET LOCAL TIME ZONE 'Pacific/Auckland'"))

    weeks = stats.leads_per_week(NOW)

    assert [week.start for week in weeks] == [FIRST_MONDAY + timedelta(weeks=n) for n in range(12)]
    assert [week.leads for week in weeks] == [2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    assert [week.spam for week in weeks] == [0] * 11 + [1]


def test_a_window_that_starts_on_a_monday_includes_that_monday():
    assert stats.week_starts(date(2025, 3, 17))[-1] == date(2025, 3, 17)
    assert stats.week_starts(date(2025, 3, 23))[-1] == date(2025, 3, 17)
    assert len(stats.week_starts(date(2025, 3, 23))) == 12


def test_source_pages_are_the_top_eight_then_other_then_unknown(app, make_lead):
    counts = [9, 8, 7, 6, 5, 4, 3, 2, 1, 1]
    for number, count in enumerate(counts, start=1):
        for _ in range(count):
            make_lead(source_path=f"/page-{number}", created_at=NOW - timedelta(days=1))
    make_lead(source_path="", created_at=NOW - timedelta(days=2))
    make_lead(source_path="/page-10", status="spam", created_at=NOW - timedelta(days=1))
    make_lead(source_path="/page-10", created_at=NOW - timedelta(weeks=13))

    groups = stats.leads_by_source_page(NOW)

    assert [(group.label, group.leads) for group in groups] == [
        *((f"/page-{number}", count) for number, count in enumerate(counts[:8], start=1)),
        ("(other)", 2),
        ("(unknown)", 1),
    ]
    assert [group.kind for group in groups[-2:]] == ["other", "empty"]


def test_utm_sources_leave_spam_out_and_show_none(app, make_lead):
    yesterday = NOW - timedelta(days=1)
    for utm_source in ["linkedin", "linkedin", "newsletter", "", ""]:
        make_lead(utm_source=utm_source, created_at=yesterday)
    for _ in range(3):
        make_lead(utm_source="spammy", status="spam", created_at=yesterday)

    groups = stats.leads_by_utm_source(NOW)

    assert [(group.label, group.leads) for group in groups] == [
        ("linkedin", 2),
        ("newsletter", 1),
        ("(none)", 2),
    ]


def test_the_dashboard_draws_twelve_weeks_and_both_breakdowns(client, editor, make_lead):
    make_lead(created_at=utcnow() - timedelta(hours=1), source_path="/contact", utm_source="x")
    make_lead(created_at=utcnow() - timedelta(hours=2), status="spam")

    page = client.get("/staff/").text
    svgs = chart_svgs(page)

    assert set(svgs) == {"weeks", "sources", "utm-sources"}
    weeks = svgs["weeks"]
    assert len([rect for rect in weeks.iter(f"{SVG}rect")]) == 12
    assert texts(weeks, "chart__value") == ["0"] * 11 + ["1"]
    assert "Spam is left out: 1 spam lead in these weeks" in page
    assert texts(svgs["sources"], "chart__label") == ["/contact"]
    assert texts(svgs["utm-sources"], "chart__label") == ["x"]
    assert page.count('<th scope="row">Week starting') == 12


def test_each_chart_is_well_formed_labelled_svg_and_labels_stay_text(client, editor, make_lead):
    make_lead(source_path='/posts/<b>&"quoted"', utm_source="a&b <c>")

    svgs = chart_svgs(client.get("/staff/").text)  # parsing fails on malformed XML

    for svg in svgs.values():
        assert svg.get("role") == "img"
        title_id, desc_id = svg.get("aria-labelledby").split()
        assert svg.find(f"{SVG}title").get("id") == title_id
        assert svg.find(f"{SVG}desc").get("id") == desc_id
        assert svg.findtext(f"{SVG}desc").strip()
        assert svg.get("width") == "100%"
    assert texts(svgs["sources"], "chart__label") == ['/posts/<b>&"quoted"']
    assert texts(svgs["utm-sources"], "chart__label") == ["a&b <c>"]


def test_the_page_has_no_inline_style_or_script(client, editor, make_lead):
    make_lead(source_path="/contact")
    add_message(make_lead(), status="failed", last_error="boom")

    document = html5lib.parse(client.get("/staff/").text, namespaceHTMLElements=False)

    for element in document.iter():
        tag = element.tag.rsplit("}", 1)[-1] if isinstance(element.tag, str) else ""
        assert tag != "style"
        assert tag != "script" or element.get("src"), "inline script"
        for name in element.attrib:
            assert name != "style", tag
            assert not name.lower().startswith("on"), (tag, name)


def test_latest_new_leads_are_escaped_newest_first_and_linked(client, editor, make_lead):
    now = utcnow()
    for hours in range(12, 0, -1):
        make_lead(name=f"Newcomer {hours}", created_at=now - timedelta(hours=hours))
    hostile = make_lead(name="<script>alert(1)</script>", company="<b>Evil</b> Ltd", created_at=now)
    make_lead(name="Already contacted", status="contacted", created_at=now)

    page = client.get("/staff/").text
    latest = page.split('id="latest-heading"')[1].split("</section>")[0]

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in latest
    assert "&lt;b&gt;Evil&lt;/b&gt; Ltd" in latest
    assert f'href="/staff/leads/{hostile.reference}"' in latest
    names = re.findall(r'class="lead-list__name"[^>]*>([^<]+)<', latest)
    assert names == ["&lt;script&gt;alert(1)&lt;/script&gt;"] + [
        f"Newcomer {h}" for h in range(1, 10)
    ]
    assert "Already contacted" not in latest
    assert "1 hour ago" in latest


def test_failed_notifications_are_listed_with_an_alert(client, editor, make_lead):
    now = utcnow()
    lead = make_lead(name="Grace Hopper")
    add_message(lead, status="failed", attempts=6, last_error="550 <no such mailbox> & gone")
    add_message(make_lead(), status="sent")
    add_message(make_lead(), status="pending", next_attempt_at=now - timedelta(hours=1))
    add_message(make_lead(), status="pending", next_attempt_at=now)

    page = client.get("/staff/").text

    assert 'role="alert"' in page
    assert "1 notification could not be sent" in page
    failures = page.split('aria-labelledby="notifications-heading"')[1].split("</ul>")[0]
    assert failures.count('class="failure"') == 1
    assert f'href="/staff/leads/{lead.reference}">{lead.reference}</a>' in failures
    assert "sales@agency.test" in failures
    assert "<dt>Attempts</dt><dd>6</dd>" in failures
    assert "550 &lt;no such mailbox&gt; &amp; gone" in failures
    assert "1 email is waiting more than 15 minutes past its send time" in page


def test_no_alert_when_every_notification_went_out(client, editor, make_lead):
    add_message(make_lead(), status="sent")

    page = client.get("/staff/").text

    assert 'role="alert"' not in page
    assert "Every notification has been sent or is on its way." in page


def test_counts_per_status(client, editor, make_lead):
    for status in ["new", "new", "won", "spam"]:
        make_lead(status=status)

    page = client.get("/staff/").text

    found = re.findall(
        r'status-count__number">(\d+)</span> <span class="status-count__label">(\w+)<', page
    )
    assert {label: int(count) for count, label in found} == {
        "New": 2,
        "Contacted": 0,
        "Qualified": 0,
        "Won": 1,
        "Lost": 0,
        "Spam": 1,
    }


def test_the_dashboard_queries_do_not_grow_with_the_data(
    app, client, editor, make_lead, query_recorder
):
    for _ in range(5):
        add_message(make_lead(), status="failed", last_error="refused")

    with query_recorder:
        assert client.get("/staff/").status_code == 200
    lead_queries = [
        sql for sql in query_recorder.statements if "leads" in sql or "outbox_messages" in sql
    ]
    assert len(lead_queries) == 7


def test_lead_links_point_at_the_lead_page(app):
    with app.test_request_context():
        assert lead_url("LC-7K4M-Q9XP") == "/staff/leads/LC-7K4M-Q9XP"


def test_column_geometry():
    points = [charts.Point(str(n), value) for n, value in enumerate([0, 5, 10, 1234])]

    chart = charts.column_chart("c", "Title", "Description", ("Label", "Value"), points)

    heights = [column.height for column in chart.items]
    assert heights[0] == 0
    assert heights[3] == charts.COLUMN_PLOT
    assert heights[1] == pytest.approx(charts.COLUMN_PLOT * 5 / 1234, abs=0.1)
    assert [column.value_text for column in chart.items] == ["0", "5", "10", "1.2k"]
    assert chart.items[0].centre == 12.5


def test_charts_of_nothing_draw_nothing_tall():
    columns = charts.column_chart("c", "T", "D", ("L", "V"), [charts.Point("a", 0)])
    bars = charts.bar_chart("b", "T", "D", ("L", "V"), [])

    assert columns.items[0].height == 0
    assert bars.items == []
    assert bars.height == 0


def test_long_bar_labels_are_shortened_but_kept_whole_in_the_table():
    label = "/posts/" + "x" * 60
    bar = charts.bar_chart("b", "T", "D", ("L", "V"), [charts.Point(label, 3)]).items[0]

    assert bar.short_label.endswith("…")
    assert len(bar.short_label) == charts.LABEL_CHARACTERS
    assert bar.label == label
    assert bar.width == 100
