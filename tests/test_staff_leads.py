import csv
import io
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import html5lib
import pytest
import sqlalchemy as sa

from app import dates
from app.extensions import db
from app.leads import inbox, workflow
from app.leads.inbox import Cursor, Filters
from app.leads.models import Lead, LeadActivity, LeadNote, OutboxMessage
from app.types import utcnow
from tests.conftest import csrf_token, deliver

INBOX = "/staff/leads/"
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


# Helpers


def page_of(response):
    """The page parsed as HTML5, strictly: a markup error fails the test."""
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    return parser.parse(response.text)


def references_on(response):
    return re.findall(r'href="/staff/leads/(LC-[0-9A-Z]{4}-[0-9A-Z]{4})"', response.text)


def lead_url(lead, action=""):
    return f"/staff/leads/{lead.reference}" + (f"/{action}" if action else "")


def post(client, url, data=None, token_from=INBOX):
    return client.post(url, data={"csrf_token": csrf_token(client, token_from), **(data or {})})


def trail_of(lead_id=None, reference=None):
    query = sa.select(LeadActivity).order_by(LeadActivity.id)
    if reference:
        query = query.where(LeadActivity.lead_reference == reference)
    else:
        query = query.where(LeadActivity.lead_id == lead_id)
    return db.session.scalars(query).all()


def fresh(lead):
    db.session.expire_all()
    return db.session.get(Lead, lead.id)


@pytest.fixture
def make_leads(app):
    """Store many leads at once: make_leads(n, created_at=..., **fields)."""

    def make(count, created_at=None, **fields):
        start = created_at or utcnow()
        leads = [
            Lead(
                name=f"Bulk {number}",
                email=f"bulk{number}@client.example",
                message="Hello",
                consent_text="I agree.",
                consent_version="test",
                created_at=start if created_at else start - timedelta(minutes=number),
                **fields,
            )
            for number in range(count)
        ]
        db.session.add_all(leads)
        db.session.commit()
        return leads

    return make


@pytest.fixture
def lead_with_history(make_lead, admin):
    """A lead with a note, two outbox rows (one failed) and a status change on its trail."""
    lead = make_lead(name="Grace Hopper", message="First line\nSecond line")
    lead.messages.append(
        OutboxMessage(kind="lead_notification", recipient="staff@agency.test", status="sent")
    )
    lead.messages.append(
        OutboxMessage(
            kind="lead_notification",
            recipient="sales@agency.test",
            status="failed",
            attempts=6,
            last_error="SMTPRecipientsRefused: mailbox <full>",
        )
    )
    db.session.commit()
    workflow.add_note(lead, "Called, left a voicemail.", admin)
    workflow.set_status(lead, "contacted", admin)
    return lead


# Inbox


def test_inbox_lists_leads_newest_first_with_their_columns(client, editor, make_lead):
    now = utcnow()
    older = make_lead(
        name="Old Lead", company="Acme", source_path="/posts/x", created_at=now - timedelta(days=2)
    )
    newer = make_lead(
        name="New Lead", email="new@client.example", created_at=now - timedelta(hours=3)
    )

    response = client.get(INBOX)

    assert response.status_code == 200
    assert references_on(response) == [newer.reference, older.reference]
    tree = page_of(response)
    rows = tree.findall(".//table/tbody/tr")
    assert len(rows) == 2
    text = "".join(rows[1].itertext())
    for value in ("Old Lead", "Acme", older.email, "/posts/x", "2 d"):
        assert value in text
    time = rows[0].find(".//time")
    assert time.text == "3 h"
    assert time.get("title").endswith("UTC")
    assert time.get("datetime").endswith("Z")
    assert rows[0].find(".//span[@class='badge badge--new']").text == "New"
    assert "no-store" in response.headers["Cache-Control"]


def test_inbox_is_behind_the_login(client, make_lead):
    make_lead()
    response = client.get(INBOX)
    assert response.status_code == 302
    assert response.location.startswith("/staff/login?next=")


def test_counts_per_status_follow_the_other_filters(client, editor, make_lead):
    for status, count in {"new": 3, "contacted": 2, "won": 1, "spam": 4}.items():
        for _ in range(count):
            make_lead(status=status)
    make_lead(status="qualified", source_path="/elsewhere")

    assert inbox.status_counts(Filters()) == {
        "new": 3, "contacted": 2, "qualified": 1, "won": 1, "lost": 0, "spam": 4
    }  # fmt: skip
    assert inbox.status_counts(Filters(source="/"))["qualified"] == 0

    response = client.get(INBOX + "?status=spam")
    tabs = {
        "".join(link.itertext()).split()[0]: "".join(link.itertext()).split()[1]
        for link in page_of(response).findall(".//nav[@class='leads-tabs']//a")
    }
    assert tabs == {
        "All": "11", "New": "3", "Contacted": "2", "Qualified": "1", "Won": "1", "Lost": "0",
        "Spam": "4",
    }  # fmt: skip
    assert 'aria-current="page">Spam' in response.text
    assert len(references_on(response)) == 4


def test_counts_are_one_group_by_query(app, make_lead, query_recorder):
    make_lead()
    with query_recorder:
        inbox.status_counts(Filters(search="lead"))
    assert query_recorder.count == 1
    assert "GROUP BY" in query_recorder.statements[0]


def test_filter_by_status_date_range_and_source(client, editor, make_lead):
    day = datetime(2024, 3, 10, 12, tzinfo=UTC)
    before = make_lead(created_at=day - timedelta(days=1))
    first = make_lead(created_at=day.replace(hour=0), source_path="/contact")
    last = make_lead(created_at=day.replace(hour=23, minute=59), status="won")
    after = make_lead(created_at=day + timedelta(days=1), source_path="/contact")

    def shown(query):
        response = client.get(INBOX + "?" + query)
        assert response.status_code == 200, response.text
        return set(references_on(response))

    assert shown("from=2024-03-10&to=2024-03-10") == {first.reference, last.reference}
    assert shown("from=2024-03-10") == {first.reference, last.reference, after.reference}
    assert shown("to=2024-03-09") == {before.reference}
    assert shown("status=won") == {last.reference}
    assert shown("source=/contact") == {first.reference, after.reference}
    assert shown("source=/contact&from=2024-03-11") == {after.reference}


@pytest.mark.parametrize(
    ("field", "stored", "query"),
    [
        ("name", "Ada Lovelace", "LOVELACE"),
        ("email", "ada@Engines.example", "engines.EX"),
        ("company", "Analytical Engines Ltd", "engines ltd"),
        ("message", "We need a campaign\nfor our new sensor", "New Sensor"),
    ],
)
def test_search_matches_each_field_case_insensitively(
    client, editor, make_lead, field, stored, query
):
    match = make_lead(**{field: stored})
    make_lead()

    response = client.get(INBOX, query_string={"q": query})

    assert references_on(response) == [match.reference]


def test_search_treats_wildcards_as_text(client, editor, make_lead):
    percent = make_lead(message="We grew 100% in a year")
    underscore = make_lead(message="see file_name")
    make_lead(message="We grew 1000 in a year")
    make_lead(message="see filename")

    assert references_on(client.get(INBOX, query_string={"q": "100%"})) == [percent.reference]
    assert references_on(client.get(INBOX, query_string={"q": "e_n"})) == [underscore.reference]
    assert references_on(client.get(INBOX, query_string={"q": "%"})) == [percent.reference]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"from": "yesterday"}, "Received from: enter a date as year-month-day"),
        ({"to": "2024-02-30"}, "Received to: enter a date as year-month-day"),
        ({"from": "2024-05-02", "to": "2024-05-01"}, "on or after the first one"),
        ({"status": "archived"}, "Choose a status from the list."),
        ({"q": "x" * 201}, "Search: at most 200 characters."),
        ({"q": "nul\x00byte"}, "Search must be plain text on one line."),
        ({"source": "/" + "p" * 600}, "Source page: at most 500 characters."),
        ({"from": "9" * 5000}, "Received from: enter a date"),
        ({"cursor": "not-a-cursor"}, "That page link is damaged or out of date."),
        ({"cursor": "eC4xLjI"}, "That page link is damaged or out of date."),
    ],
)
def test_malformed_filters_get_a_clear_message(client, editor, make_lead, query, message):
    lead = make_lead()

    response = client.get(INBOX, query_string=query)

    assert response.status_code == 400
    assert message in response.text
    assert 'role="alert"' in response.text
    assert references_on(response) == [lead.reference]  # the rest of the page still works


def test_the_last_day_there_is_does_not_overflow(client, editor, make_lead):
    make_lead()
    response = client.get(INBOX, query_string={"from": "0001-01-01", "to": "9999-12-31"})
    assert response.status_code == 200
    assert len(references_on(response)) == 1


# Keyset pagination


def walk(client, direction_rel, start_url):
    """Follow the Older (rel=next) or Newer (rel=prev) links; the references of every page."""
    pages, url = [], start_url
    while url:
        response = client.get(url)
        assert response.status_code == 200
        pages.append(references_on(response))
        link = re.search(rf'rel="{direction_rel}" href="([^"]+)"', response.text)
        url = link.group(1).replace("&amp;", "&") if link else None
    return pages


def test_keyset_pages_cover_every_lead_once_even_with_equal_timestamps(client, editor, make_leads):
    moment = datetime(2024, 1, 1, 9, tzinfo=UTC)
    leads = make_leads(60, created_at=moment) + make_leads(
        60, created_at=moment - timedelta(days=1)
    )
    expected = [
        lead.reference for lead in sorted(leads, key=lambda x: (x.created_at, x.id), reverse=True)
    ]

    pages = walk(client, "next", INBOX)

    assert [len(page) for page in pages] == [50, 50, 20]
    assert [reference for page in pages for reference in page] == expected

    back = walk(client, "prev", INBOX + "?" + older_link_of(client, 2))
    assert back == [expected[100:], expected[50:100], expected[:50]]


def older_link_of(client, pages):
    """The query string of the page reached by following Older `pages` times."""
    url = INBOX
    for _ in range(pages):
        response = client.get(url)
        url = re.search(r'rel="next" href="([^"]+)"', response.text).group(1)
    return url.split("?", 1)[1].replace("&amp;", "&")


def test_keyset_pages_keep_the_filters(client, editor, make_leads):
    make_leads(55, status="won")
    make_leads(30)
    pages = walk(client, "next", INBOX + "?status=won")
    assert [len(page) for page in pages] == [50, 5]


def test_newer_from_the_second_page_is_the_full_first_page(app, make_leads):
    make_leads(7)
    first = inbox.inbox_page(Filters(), size=3)
    second = inbox.inbox_page(Filters(), first.older, size=3)
    third = inbox.inbox_page(Filters(), second.older, size=3)

    assert [len(page.leads) for page in (first, second, third)] == [3, 3, 1]
    assert third.older is None and third.newer is not None
    assert first.newer is None and first.is_first
    back_to_second = inbox.inbox_page(Filters(), third.newer, size=3)
    assert [lead.id for lead in back_to_second.leads] == [lead.id for lead in second.leads]
    top = inbox.inbox_page(Filters(), second.newer, size=3)
    assert [lead.id for lead in top.leads] == [lead.id for lead in first.leads]
    assert top.is_first


def test_cursor_round_trips_and_refuses_garbage():
    cursor = Cursor("o", datetime(2024, 5, 31, 14, 2, 3, 456789, tzinfo=UTC), 42)
    assert Cursor.decode(cursor.encode()) == cursor
    for token in ["", "!!!", "bzEyMw", "eC4xLjI", "by45OTk5OTk5OTk5OTk5OTk5OTkuMQ"]:
        with pytest.raises(inbox.InvalidCursor):
            Cursor.decode(token)


# CSV export


def read_csv(response):
    body = response.data.decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.reader(io.StringIO(body[1:])))


def test_export_streams_the_filtered_leads_as_csv(client, editor, make_lead):
    won = make_lead(name="Winner", status="won", utm_source="newsletter")
    make_lead(name="Someone else")

    response = client.get("/staff/leads/export.csv?status=won")

    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.mimetype_params["charset"] == "utf-8"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="leads-{utcnow():%Y-%m-%d}.csv"'
    )
    assert "no-store" in response.headers["Cache-Control"]
    header, *rows = read_csv(response)
    assert header[:5] == ["Reference", "Received (UTC)", "Status", "Name", "Email"]
    assert len(rows) == 1
    record = dict(zip(header, rows[0], strict=True))
    assert record["Reference"] == won.reference
    assert record["Received (UTC)"] == dates.spreadsheet(won.created_at)
    assert record["Name"] == "Winner"
    assert record["UTM source"] == "newsletter"


@pytest.mark.parametrize("dangerous", ["=HYPERLINK(1)", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_export_neutralises_formulas(client, editor, make_lead, dangerous):
    make_lead(name=dangerous, company=dangerous, message=dangerous)

    header, row = read_csv(client.get("/staff/leads/export.csv"))

    record = dict(zip(header, row, strict=True))
    for column in ("Name", "Company", "Message"):
        assert record[column] == "'" + dangerous


def cells_read_with(separator, response):
    body = response.data.decode("utf-8").removeprefix("\ufeff")
    rows = csv.reader(io.StringIO(body, newline=""), delimiter=separator)
    return [cell for row in rows for cell in row]


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@pytest.mark.parametrize(
    "dangerous",
    [
        'Acme;=HYPERLINK("https://evil.example","Open")',
        "Acme,=1+1",
        "Acme;+1+1",
        "Acme;-2+3",
        "Acme;@SUM(A1)",
        "Acme;\tx",
        "Acme;\rx",
        'Acme;"=1+1',
        'Acme;""@SUM(A1)',
        "Hello\n=HYPERLINK(1)",
        "Hello\r\n-2+3",
        "=1;=2,=3",
        'Acme\t=HYPERLINK("https://evil.example")',
        "Acme|=1+1",
        "Acme; =1+1",
        'Acme, "=1+1',
    ],
)
@pytest.mark.parametrize("separator", [",", ";", "\t", "|"])
def test_export_neutralises_formulas_after_either_separator_and_line_breaks(
    client, editor, make_lead, dangerous, separator
):
    lead = make_lead(name=dangerous, company=dangerous, message=dangerous, utm_term=dangerous)

    cells = cells_read_with(separator, client.get("/staff/leads/export.csv"))

    assert any(lead.reference in cell for cell in cells)
    for cell in cells:
        assert not cell.lstrip(' "').startswith(FORMULA_STARTS), (separator, cell)


def test_export_neutralises_only_what_could_start_a_cell(client, editor, make_lead):
    make_lead(name="Acme;=HYPERLINK(1)", company="Smith-Jones, Ltd; R&D", message="Hi,\n=1+1")

    header, row = read_csv(client.get("/staff/leads/export.csv"))

    record = dict(zip(header, row, strict=True))
    assert record["Name"] == "Acme;'=HYPERLINK(1)"
    assert record["Company"] == "Smith-Jones, Ltd; R&D"
    assert record["Message"] == "Hi,\n'=1+1"


def test_export_keeps_unicode_and_line_breaks(client, editor, make_lead):
    make_lead(name="Zoë Ångström", message='Line one,\n"quoted" line two')
    header, row = read_csv(client.get("/staff/leads/export.csv"))
    record = dict(zip(header, row, strict=True))
    assert record["Name"] == "Zoë Ångström"
    assert record["Message"] == 'Line one,\n"quoted" line two'


def test_export_is_written_in_chunks(app, make_leads):
    make_leads(7)
    chunks = list(inbox.csv_chunks(Filters(), chunk=3))
    # BOM and header, then rows three at a time, then the remainder.
    assert len(chunks) == 4
    assert sum(chunk.count("\r\n") for chunk in chunks) == 8


def test_export_with_bad_filters_explains_instead(client, editor):
    response = client.get("/staff/leads/export.csv?from=31/12/2024")
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "enter a date as year-month-day" in response.text


# Lead page


def test_lead_page_shows_every_field_attribution_consent_and_emails(
    client, lead_with_history, make_lead
):
    lead = lead_with_history
    lead.phone = "+44 20 7946 0000"
    lead.page_referrer = "https://search.example/?q=agency"
    lead.utm_source, lead.utm_campaign = "newsletter", "spring"
    lead.source_url = "https://agency.test/posts/batteries?utm_source=newsletter"
    lead.source_path = "/posts/batteries"
    db.session.commit()

    response = client.get(lead_url(lead))

    assert response.status_code == 200
    page_of(response)
    text = response.text
    for value in (
        lead.reference, "Grace Hopper", lead.email, lead.company, "+44 20 7946 0000",
        "/posts/batteries", "https://search.example/?q=agency", "newsletter", "spring",
        "I agree.", "test", "staff@agency.test", "sales@agency.test",
        "SMTPRecipientsRefused: mailbox &lt;full&gt;", "Called, left a voicemail.",
    ):  # fmt: skip
        assert value in text, value
    message = page_of(response).find(".//div[@class='lead-message']")
    assert message.text == "First line\nSecond line"
    assert text.count("Send again") == 2
    assert "changed the status: new → contacted" in text
    assert "added a note" in text


def test_unknown_or_malformed_reference_is_a_styled_404(client, editor):
    for reference in ("LC-0000-0000", "nonsense", "LC-%00", "LC-AAAA-AAAA%27"):
        response = client.get(f"/staff/leads/{reference}")
        assert response.status_code == 404
        assert "We cannot find that lead" in response.text
        assert "staff-header" in response.text


def test_reference_in_lower_case_redirects_to_the_lead(client, editor, make_lead):
    lead = make_lead()
    response = client.get(f"/staff/leads/{lead.reference.lower()}")
    assert response.status_code == 301
    assert response.location == lead_url(lead)


def test_lead_fields_with_html_show_as_text_everywhere(client, editor, make_lead):
    lead = make_lead(
        name=XSS, company=XSS, message=XSS, source_path="/" + XSS, page_referrer=XSS,
        utm_source=XSS, consent_text=XSS, user_agent=XSS, spam_reason=XSS, status="spam",
    )  # fmt: skip
    workflow.add_note(lead, XSS, editor)

    for url in (INBOX, INBOX + "?status=spam", lead_url(lead)):
        response = client.get(url)
        assert response.status_code == 200
        assert "<script>" not in response.text
        assert "<img src=x" not in response.text
        assert "&lt;script&gt;alert(" in response.text
        page_of(response)


def test_lead_page_ids_are_unique(client, lead_with_history):
    ids = re.findall(r'\sid="([^"]+)"', client.get(lead_url(lead_with_history)).text)
    assert [name for name, count in Counter(ids).items() if count > 1] == []


# Workflow: status, assignee, notes, resend


def test_status_change_is_recorded_in_the_trail(client, editor, make_lead):
    lead = make_lead()

    response = post(client, lead_url(lead, "status"), {"status": "qualified"})

    assert response.status_code == 303
    assert response.location == lead_url(lead)
    assert fresh(lead).status == "qualified"
    (entry,) = trail_of(lead.id)
    assert (entry.action, entry.detail, entry.actor_id) == ("status", "new → qualified", editor.id)
    assert entry.lead_reference == lead.reference
    assert "Status changed to Qualified." in client.get(response.location).text


def test_same_status_again_changes_nothing(client, editor, make_lead):
    lead = make_lead()
    post(client, lead_url(lead, "status"), {"status": "new"})
    assert trail_of(lead.id) == []


def test_spam_and_not_spam(client, editor, make_lead):
    lead = make_lead(status="spam", spam_reason="honeypot")
    page = client.get(lead_url(lead)).text
    assert "Why it is spam: honeypot" in page
    assert "Not spam: move to New" in page

    post(client, lead_url(lead, "status"), {"status": "new"})

    lead = fresh(lead)
    assert (lead.status, lead.spam_reason) == ("new", None)
    post(client, lead_url(lead, "status"), {"status": "spam"})
    assert fresh(lead).spam_reason == workflow.STAFF_SPAM_REASON
    assert [entry.detail for entry in trail_of(lead.id)] == ["spam → new", "new → spam"]


def outbox_statuses(reference):
    db.session.rollback()
    lead = db.session.scalars(sa.select(Lead).where(Lead.reference == reference)).one()
    return [message.status for message in lead.messages]


def test_not_spam_sends_the_notification_the_lead_never_sent(
    app, client, editor, runner, post_lead, smtp_server
):
    app.config["LEADS_NOTIFY_TO"] = ["sales@agency.test"]
    smtp_server.configure(app)
    assert post_lead(app.test_client(), website="https://spam.example").status_code == 303
    lead = db.session.scalars(sa.select(Lead)).one()
    assert (lead.status, lead.messages) == ("spam", [])
    url, reference = lead_url(lead, "status"), lead.reference

    post(client, url, {"status": "new"})
    post(client, url, {"status": "spam"})
    post(client, url, {"status": "new"})
    deliver(runner)

    (received,) = smtp_server.wait_for(1)
    assert received.rcpt_tos == ["sales@agency.test"]
    assert f"[{reference}]" in received.message["Subject"]
    assert outbox_statuses(reference) == ["sent"]


def test_bulk_not_spam_sends_each_missing_notification(
    app, client, editor, runner, make_lead, smtp_server
):
    app.config["LEADS_NOTIFY_TO"] = ["sales@agency.test"]
    smtp_server.configure(app)
    leads = [make_lead(status="spam", spam_reason="honeypot") for _ in range(3)]
    ids, references = [str(lead.id) for lead in leads], sorted(lead.reference for lead in leads)

    bulk(client, {"lead": ids, "action": "status", "status": "new"})
    deliver(runner)

    subjects = [received.message["Subject"] for received in smtp_server.wait_for(3)]
    assert sorted(re.search(r"\[(LC-[^\]]+)\]", subject)[1] for subject in subjects) == references


def test_unknown_status_is_refused(client, editor, make_lead):
    lead = make_lead()
    response = post(client, lead_url(lead, "status"), {"status": "archived"})
    assert response.status_code == 400
    assert "Choose a status from the pipeline." in response.text
    assert fresh(lead).status == "new"


def test_assign_to_active_staff_and_back_to_nobody(client, editor, make_user, make_lead):
    colleague = make_user(name="Katherine Johnson")
    disabled = make_user(name="Gone Person", is_active=False)
    lead = make_lead()
    page = client.get(lead_url(lead)).text
    assert "Katherine Johnson" in page
    assert "Gone Person" not in page

    response = post(client, lead_url(lead, "assignee"), {"assignee": str(colleague.id)})

    assert response.status_code == 303
    assert fresh(lead).assignee_id == colleague.id
    refused = post(client, lead_url(lead, "assignee"), {"assignee": str(disabled.id)})
    assert refused.status_code == 400
    assert "Choose an active member of staff" in refused.text
    assert post(client, lead_url(lead, "assignee"), {"assignee": "x"}).status_code == 400
    post(client, lead_url(lead, "assignee"), {"assignee": ""})
    assert fresh(lead).assignee_id is None
    assert [(e.action, e.detail) for e in trail_of(lead.id)] == [
        ("assigned", "nobody → Katherine Johnson"),
        ("assigned", "Katherine Johnson → nobody"),
    ]


def test_notes_are_timestamped_with_their_author(client, editor, make_lead):
    lead = make_lead()

    response = post(client, lead_url(lead, "notes"), {"body": "  Sent a proposal.\r\nBy email. "})

    assert response.status_code == 303
    note = db.session.scalars(sa.select(LeadNote)).one()
    assert (note.body, note.author_id) == ("Sent a proposal.\nBy email.", editor.id)
    assert [entry.action for entry in trail_of(lead.id)] == ["note"]
    page = client.get(lead_url(lead)).text
    assert editor.display_name in page
    assert "Sent a proposal." in page


@pytest.mark.parametrize(
    ("body", "message"),
    [("   ", "Write the note before saving it."), ("x" * 5001, "at most 5,000 characters")],
)
def test_bad_notes_are_refused_with_a_message(client, editor, make_lead, body, message):
    lead = make_lead()
    response = post(client, lead_url(lead, "notes"), {"body": body})
    assert response.status_code == 400
    assert message in response.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LeadNote)) == 0


def test_nul_in_a_note_is_dropped(client, editor, make_lead):
    lead = make_lead()
    post(client, lead_url(lead, "notes"), {"body": "a\x00b"})
    assert db.session.scalars(sa.select(LeadNote.body)).one() == "ab"


def test_send_again_queues_the_email_now(client, lead_with_history, admin):
    failed = lead_with_history.messages[1]
    url = lead_url(lead_with_history, f"messages/{failed.id}/resend")

    response = post(client, url)

    assert response.status_code == 303
    db.session.expire_all()
    message = db.session.get(OutboxMessage, failed.id)
    assert message.status == "pending"
    assert message.next_attempt_at <= utcnow()
    entry = trail_of(lead_with_history.id)[-1]
    assert (entry.action, entry.actor_id) == ("resent", admin.id)
    assert entry.detail == f"lead_notification (message {failed.id})"


def test_send_again_is_refused_while_a_worker_sends_it(client, lead_with_history):
    message = lead_with_history.messages[1]
    message.claimed_by = "worker"
    message.claim_expires_at = utcnow() + timedelta(minutes=5)
    db.session.commit()

    response = post(client, lead_url(lead_with_history, f"messages/{message.id}/resend"))

    assert "being sent right now" in client.get(response.location).text
    db.session.expire_all()
    assert db.session.get(OutboxMessage, message.id).status == "failed"


def test_send_again_for_another_leads_message_is_404(client, lead_with_history, make_lead):
    other = make_lead()
    message = lead_with_history.messages[0]
    response = post(client, lead_url(other, f"messages/{message.id}/resend"))
    assert response.status_code == 404
    assert post(client, lead_url(other, "messages/999999/resend")).status_code == 404


# 2**31 is one past PostgreSQL's integer; the other is past SQLite's 64 bits.
@pytest.mark.parametrize("message_id", ["0", str(2**31), "99999999999999999999"])
def test_send_again_for_an_id_out_of_the_databases_range_is_404(
    client, lead_with_history, message_id
):
    response = post(client, lead_url(lead_with_history, f"messages/{message_id}/resend"))

    assert response.status_code == 404


# Bulk actions


def bulk(client, data, token_from=INBOX):
    return post(client, "/staff/leads/bulk", data, token_from)


def test_bulk_set_status_records_each_lead(client, editor, make_lead):
    chosen = [make_lead(), make_lead(status="contacted"), make_lead()]
    untouched = make_lead()

    response = bulk(
        client,
        {"lead": [str(lead.id) for lead in chosen], "action": "status", "status": "contacted",
         "return_to": "/staff/leads/?status=new"},
    )  # fmt: skip

    assert response.status_code == 303
    assert response.location == "/staff/leads/?status=new"
    assert [fresh(lead).status for lead in chosen] == ["contacted"] * 3
    assert fresh(untouched).status == "new"
    for lead in (chosen[0], chosen[2]):
        (entry,) = trail_of(lead.id)
        assert (entry.action, entry.detail, entry.actor_id) == (
            "bulk_status", "new → contacted", editor.id,
        )  # fmt: skip
    assert trail_of(chosen[1].id) == []
    flashed = client.get(response.location).text
    assert "2 leads set to Contacted. 1 already had that status." in flashed


def test_bulk_mark_spam(client, editor, make_lead):
    leads = [make_lead(), make_lead()]
    bulk(client, {"lead": [str(lead.id) for lead in leads], "action": "spam", "status": "won"})
    assert {fresh(lead).status for lead in leads} == {"spam"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "status", "status": "won"}, "Select at least one lead first."),
        ({"lead": ["1"], "action": "delete"}, "Choose what to do with the selection."),
        ({"lead": ["1"]}, "Choose what to do with the selection."),
        ({"lead": ["1"], "action": "status", "status": "x"}, "Choose a status from the list."),
        ({"lead": ["1; DROP"], "action": "spam"}, "The selection could not be read."),
        # Beyond an integer column: PostgreSQL would fail the query.
        ({"lead": ["2147483648"], "action": "spam"}, "The selection could not be read."),
        ({"lead": ["99999999999"], "action": "spam"}, "The selection could not be read."),
        ({"lead": [str(n) for n in range(501)], "action": "spam"}, "at most 500 leads"),
    ],
)
def test_bulk_with_a_bad_request_explains_and_goes_back(client, editor, make_lead, data, message):
    lead = make_lead()

    response = bulk(client, data)

    assert response.status_code == 303
    assert response.location == INBOX
    assert message in client.get(response.location).text
    assert fresh(lead).status == "new"


def test_bulk_only_returns_to_the_inbox(client, editor, make_lead):
    lead = make_lead()
    for target in ("https://evil.example/", "//evil.example/staff/leads/", "/staff/posts/"):
        response = bulk(client, {"lead": [str(lead.id)], "action": "spam", "return_to": target})
        assert response.location == INBOX


def test_bulk_reports_leads_that_are_gone(client, editor, make_lead):
    lead = make_lead()
    response = bulk(client, {"lead": [str(lead.id), "999999"], "action": "spam"})
    assert "1 lead set to Spam. 1 no longer exist." in client.get(response.location).text


# Erasure and purge


def test_admin_erases_a_lead_and_the_trail_remembers(client, lead_with_history, admin):
    lead = lead_with_history
    reference, lead_id = lead.reference, lead.id

    response = post(client, lead_url(lead, "erase"), {"confirm": reference.lower()})

    assert response.status_code == 303
    assert response.location == INBOX
    assert "has been erased" in client.get(INBOX).text
    db.session.expire_all()
    assert db.session.get(Lead, lead_id) is None
    for model in (LeadNote, OutboxMessage):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(model)) == 0
    entries = trail_of(reference=reference)
    assert [entry.action for entry in entries] == ["note", "status", "erased"]
    assert all(entry.lead_id is None for entry in entries)
    assert (entries[-1].actor_id, entries[-1].detail) == (admin.id, "")
    assert client.get(f"/staff/leads/{reference}").status_code == 404


def test_erasure_needs_the_typed_reference(client, admin, make_lead):
    lead = make_lead()
    for typed in ("", "LC-0000-0000"):
        response = post(client, lead_url(lead, "erase"), {"confirm": typed})
        assert response.status_code == 400
        assert f"Type the reference {lead.reference} exactly" in response.text
    assert fresh(lead) is not None


def test_editor_cannot_erase(client, editor, make_lead):
    lead = make_lead()
    assert "Erase this lead" not in client.get(lead_url(lead)).text

    response = post(client, lead_url(lead, "erase"), {"confirm": lead.reference})

    assert response.status_code == 403
    assert "Only an administrator can do this" in response.text
    assert fresh(lead) is not None


def test_purge_removes_old_leads_only(app, runner, make_lead, admin):
    old = make_lead(created_at=utcnow() - timedelta(days=400))
    old.messages.append(OutboxMessage(kind="lead_notification", recipient="s@agency.test"))
    db.session.commit()
    workflow.add_note(old, "Old note", admin)
    recent = make_lead(created_at=utcnow() - timedelta(days=10))
    old_reference = old.reference

    dry = runner.invoke(args=["leads", "purge", "--older-than", "365", "--dry-run"])

    assert dry.exit_code == 0, dry.output
    assert "Dry run: 1 lead" in dry.output and "Nothing was deleted." in dry.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 2

    result = runner.invoke(args=["leads", "purge", "--older-than", "365"])

    assert result.exit_code == 0, result.output
    assert "Purged 1 lead received before" in result.output
    db.session.expire_all()
    assert db.session.scalars(sa.select(Lead.reference)).all() == [recent.reference]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LeadNote)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 0
    entries = trail_of(reference=old_reference)
    assert [(e.action, e.lead_id) for e in entries] == [("note", None), ("purged", None)]
    assert entries[-1].actor_id is None


def test_purge_works_in_batches(app, make_leads, monkeypatch):
    monkeypatch.setattr(workflow, "PURGE_BATCH", 3)
    make_leads(7, created_at=utcnow() - timedelta(days=30))
    assert workflow.purge_leads(utcnow() - timedelta(days=1)) == 7
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 0
    assert len(db.session.scalars(sa.select(LeadActivity)).all()) == 7


@pytest.mark.parametrize("days", ["0", "-3", "abc", "1.5", "99999999"])
def test_purge_needs_a_positive_whole_number_of_days(runner, days):
    result = runner.invoke(args=["leads", "purge", "--older-than", days])
    assert result.exit_code == 2
    assert "--older-than" in result.output


def test_purge_needs_older_than(runner):
    result = runner.invoke(args=["leads", "purge"])
    assert result.exit_code == 2
    assert "Missing option '--older-than'" in result.output


# Methods and CSRF on every action

ACTIONS = ["status", "assignee", "notes", "erase", "messages/1/resend"]


@pytest.mark.parametrize("action", ACTIONS)
def test_actions_are_post_only(client, admin, make_lead, action):
    assert client.get(lead_url(make_lead(), action)).status_code == 405


def test_bulk_is_post_only(client, editor):
    assert client.get("/staff/leads/bulk").status_code == 405


@pytest.mark.parametrize("action", ACTIONS)
def test_actions_without_csrf_token_are_refused(client, admin, make_lead, action):
    lead = make_lead()
    client.get(INBOX)
    response = client.post(
        lead_url(lead, action), data={"status": "won", "confirm": lead.reference}
    )
    assert response.status_code == 400
    assert "This form expired" in response.text
    assert fresh(lead).status == "new"


def test_bulk_without_csrf_token_is_refused(client, editor, make_lead):
    lead = make_lead()
    response = client.post("/staff/leads/bulk", data={"lead": [str(lead.id)], "action": "spam"})
    assert response.status_code == 400
    assert fresh(lead).status == "new"
