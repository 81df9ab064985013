"""The staff workspace in a real browser: a lead sent through the public form, followed up.

What issue 4 asks to see: a headless Chromium logging in, finding a lead a visitor has just
submitted, adding a note, changing its status, exporting the inbox as CSV and logging out,
as a member of staff would, with the cookie, console and network checked along the way.
"""

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from app.accounts.models import StaffSession
from app.extensions import db
from app.leads.models import Lead
from tests.conftest import STAFF_PASSWORD
from tests.e2e.browser import foreign_requests, watch_errors

THANKS_URL = re.compile(r"/contact/thanks/(LC-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4})$")

# A lead no other row could match by accident.
VISITOR = {
    "Your name": "Hypatia Quillfeather",
    "Email address": "hypatia@quillfeather-optics.example",
    "Company (optional)": "Quillfeather Optics Zq7",
    "How can we help?": "Our spectrometer launches in March.\nCan you plan the press campaign?",
}
NAME = VISITOR["Your name"]
COMPANY = VISITOR["Company (optional)"]
MESSAGE = VISITOR["How can we help?"]

STAFF_NAME = "Morgan Reyes"
NOTE = "Called, wants a proposal"

CSV_HEADER = [
    "Reference",
    "Received (UTC)",
    "Status",
    "Name",
    "Email",
    "Company",
    "Phone",
    "Message",
    "Source page",
    "Source URL",
    "Referrer",
    "UTM source",
    "UTM medium",
    "UTM campaign",
    "UTM term",
    "UTM content",
    "Assignee",
    "Consent version",
]

# Reports CSP violations on the console, where the error watch below sees them.
CSP_TO_CONSOLE = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(
    `CSP violation: ${event.effectiveDirective} blocked ${event.blockedURI || "(inline)"}`
    + ` in ${event.sourceFile || event.documentURI}:${event.lineNumber}`
  );
});
"""

STAMP = re.compile(r"^\d{2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2} UTC$")


@pytest.fixture
def app_config(app_config):
    """No minimum fill time: the test types faster than a person."""
    app_config.update(FORM_MIN_SECONDS=0)
    return app_config


# --- Helpers ----------------------------------------------------------------------------


def expect_login_page_for(page, live_server, target):
    """On the login page, sent there from `target`, which it will return to."""
    expect(page).to_have_url(re.compile(r"/staff/login\?"))
    url = urlsplit(page.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{live_server}/staff/login"
    assert parse_qs(url.query) == {"next": [target]}
    expect(page.get_by_role("heading", level=1)).to_have_text("Staff log in")


def flash(page):
    return page.get_by_role("main").get_by_role("status")


def definition(section, term):
    """The <dd> that goes with the <dt> reading exactly `term` in a description list."""
    return section.locator(f"dt:text-is('{term}') + dd")


def expect_recent_time(time_element, now):
    """A <time> shown as "07 Mar 2025, 14:05 UTC" whose datetime is within a minute or two."""
    expect(time_element).to_have_text(STAMP)
    moment = datetime.fromisoformat(time_element.get_attribute("datetime").replace("Z", "+00:00"))
    assert now - timedelta(minutes=2) <= moment <= now + timedelta(minutes=2), moment


def submit_the_public_form(page):
    """A visitor sends the "Let's connect" form on /contact; returns the lead's reference."""
    assert page.goto("/contact").status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text("Let's connect")
    form = page.locator("form[data-contact-form]")
    for label, value in VISITOR.items():
        form.get_by_label(label, exact=True).fill(value)
    form.get_by_role("checkbox", name=re.compile(r"^I agree that ")).check()
    with page.expect_navigation():
        form.get_by_role("button", name="Send message").click()
    expect(page).to_have_url(THANKS_URL)
    reference = THANKS_URL.search(page.url).group(1)
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you, your message has arrived")
    expect(page.get_by_text(reference, exact=True)).to_be_visible()
    return reference


def stored_lead(reference):
    db.session.rollback()  # the live server commits in its own thread: read afresh
    return db.session.scalars(sa.select(Lead).where(Lead.reference == reference)).one()


# --- The test -----------------------------------------------------------------------------


def test_staff_find_a_web_lead_note_it_move_it_on_export_it_and_log_out(
    new_context, live_server, request_log, make_user, make_lead
):
    # 1. A visitor, in a browser of their own, sends the form.
    visitor = new_context()
    reference = submit_the_public_form(visitor.new_page())
    other = make_lead(name="Someone Else", company="Unrelated Holdings")  # the search must skip it

    # 2. A member of staff, in another browser, asks for the inbox and has to log in first.
    staff_user = make_user("editor", name=STAFF_NAME)
    staff = new_context()
    staff.add_init_script(CSP_TO_CONSOLE)
    page = staff.new_page()
    errors = watch_errors(page)

    page.goto("/staff/leads/")
    expect_login_page_for(page, live_server, "/staff/leads/")
    # The login form's CSRF token already lives in the session cookie: scoped to /staff.
    assert [(c["name"], c["path"], c["httpOnly"]) for c in staff.cookies()] == [
        ("staff_session", "/staff", True)
    ]

    page.get_by_label("Email address", exact=True).fill(staff_user.email)
    page.get_by_label("Password", exact=True).fill(STAFF_PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server}/staff/leads/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Leads")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()

    [cookie] = staff.cookies()
    assert cookie["name"] == "staff_session"
    assert cookie["path"] == "/staff", cookie
    assert cookie["httpOnly"] is True, cookie
    assert cookie["sameSite"] == "Lax", cookie
    assert cookie["domain"] == "127.0.0.1", cookie

    leads_table = page.get_by_role("table", name=re.compile(r"^Leads, newest first"))
    lead_rows = leads_table.locator("tbody").get_by_role("row")
    expect(lead_rows).to_have_count(2)  # both leads before searching

    # 3. Search for the company, find the lead and open it.
    filters = page.get_by_role("search", name="Filter leads")
    filters.get_by_label("Search", exact=True).fill(COMPANY)
    with page.expect_navigation():
        filters.get_by_role("button", name="Apply filters").click()
    assert parse_qs(urlsplit(page.url).query)["q"] == [COMPANY]
    expect(leads_table).to_have_accessible_name("Leads, newest first, filtered")
    expect(lead_rows).to_have_count(1)
    row = lead_rows.filter(has_text=COMPANY)
    expect(row).to_have_count(1)
    expect(row.get_by_role("cell", name=VISITOR["Email address"])).to_be_visible()
    expect(row.get_by_role("link", name="/contact")).to_be_visible()  # the source page
    expect(row.get_by_text("New", exact=True)).to_be_visible()
    expect(leads_table).not_to_contain_text(other.company)

    with page.expect_navigation():
        row.get_by_role("link", name=NAME).click()
    expect(page).to_have_url(f"{live_server}/staff/leads/{reference}")
    expect(page).to_have_title(re.compile(rf"^{NAME} \({reference}\) \| Leads"))
    expect(page.get_by_role("heading", level=1)).to_have_text(NAME)

    enquiry = page.get_by_role("region", name="Enquiry")
    expect(definition(enquiry, "Reference")).to_have_text(reference)
    expect(definition(enquiry, "Company")).to_have_text(COMPANY)
    expect(definition(enquiry, "Email")).to_have_text(VISITOR["Email address"])
    message = enquiry.locator(".lead-message")
    expect(message).to_have_text(MESSAGE)
    assert message.inner_text() == MESSAGE, "the line break of the message is kept"
    came_from = page.get_by_role("region", name="Where it came from")
    expect(definition(came_from, "Source page")).to_have_text("/contact")
    expect(definition(came_from, "Source URL")).to_have_text(f"{live_server}/contact")

    badge = page.locator(".page-header .badge")
    expect(badge).to_have_text("New")
    activity = page.get_by_role("region", name="Activity")
    trail = activity.get_by_role("listitem")
    expect(trail).to_have_count(1)
    expect(trail.first).to_contain_text("Website form: the lead arrived from /contact")

    # 4. A note, signed and dated, and its line in the activity trail.
    notes = page.get_by_role("region", name="Notes")
    expect(notes.get_by_text("No notes yet.")).to_be_visible()
    notes.get_by_label("Add a note", exact=True).fill(NOTE)
    now = datetime.now(UTC)
    with page.expect_navigation():
        notes.get_by_role("button", name="Add note").click()
    expect(page).to_have_url(f"{live_server}/staff/leads/{reference}")
    expect(flash(page)).to_have_text("Note added.")

    note = notes.get_by_role("listitem").filter(has_text=NOTE)
    expect(note).to_have_count(1)
    expect(note.locator(".lead-note__body")).to_have_text(NOTE)
    expect(note.get_by_text(STAFF_NAME, exact=True)).to_be_visible()
    expect_recent_time(note.locator("time"), now)
    expect(notes.get_by_label("Add a note", exact=True)).to_have_value("")

    expect(trail).to_have_count(2)
    expect(trail.nth(1)).to_contain_text(re.compile(rf"{STAFF_NAME}\s+added a note"))
    expect_recent_time(trail.nth(1).locator("time"), now)
    expect(activity).not_to_contain_text(NOTE)  # the trail keeps no personal data

    # 5. The lead moves to "contacted".
    pipeline = page.get_by_role("region", name="Status")
    expect(pipeline.get_by_role("button", name="New (current status)")).to_have_attribute(
        "aria-current", "step"
    )
    with page.expect_navigation():
        pipeline.get_by_role("button", name="Contacted", exact=True).click()
    expect(flash(page)).to_have_text("Status changed to Contacted.")
    expect(badge).to_have_text("Contacted")
    expect(pipeline.get_by_role("button", name="Contacted (current status)")).to_have_attribute(
        "aria-current", "step"
    )
    expect(pipeline.get_by_role("button", name="New", exact=True)).not_to_have_attribute(
        "aria-current", "step"
    )
    expect(trail).to_have_count(3)
    expect(trail.nth(2)).to_contain_text(
        re.compile(rf"{STAFF_NAME}\s+changed the status: new → contacted")
    )

    lead = stored_lead(reference)
    assert lead.status == "contacted"
    assert [(n.body, n.author_id) for n in lead.notes] == [(NOTE, staff_user.id)]

    # 6. Back to the inbox, and the CSV export of it.
    with page.expect_navigation():
        page.get_by_role("link", name="← All leads").click()
    expect(page).to_have_url(f"{live_server}/staff/leads/")
    expect(lead_rows.filter(has_text=COMPANY).get_by_text("Contacted", exact=True)).to_be_visible()

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export these leads as CSV").click()
    download = download_info.value
    assert download.failure() is None
    assert download.url == f"{live_server}/staff/leads/export.csv"
    assert re.fullmatch(r"leads-\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename)
    with open(download.path(), "rb") as file:
        raw = file.read()
    assert raw.startswith(b"\xef\xbb\xbf"), raw[:20]
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0] == CSV_HEADER
    by_reference = {row[0]: dict(zip(CSV_HEADER, row, strict=True)) for row in rows[1:]}
    assert set(by_reference) == {reference, other.reference}
    exported = by_reference[reference]
    assert exported["Status"] == "contacted"
    assert (exported["Name"], exported["Email"], exported["Company"]) == (
        NAME,
        VISITOR["Email address"],
        COMPANY,
    )
    assert exported["Message"] == MESSAGE
    assert exported["Source page"] == "/contact"
    assert by_reference[other.reference]["Status"] == "new"

    # 7. Log out: back on the login page, and the inbox is closed again.
    with page.expect_navigation():
        page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_server}/staff/login")
    expect(flash(page)).to_have_text("You have logged out.")
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)
    db.session.rollback()
    sessions = db.session.scalars(
        sa.select(StaffSession).where(StaffSession.user_id == staff_user.id)
    ).all()
    assert [s.revoked_at is not None for s in sessions] == [True], "the login is ended"

    page.goto("/staff/leads/")
    expect_login_page_for(page, live_server, "/staff/leads/")
    expect(page.get_by_role("heading", name="Leads")).to_have_count(0)

    # 8. Cookies, console and network over the whole journey.
    page.wait_for_load_state("networkidle")
    assert visitor.cookies() == [], "the public site sets no cookie"
    assert all(c["path"] == "/staff" and c["httpOnly"] for c in staff.cookies())
    assert errors == [], "console errors or CSP violations in the staff pages"
    assert any(url.endswith("/staff/leads/export.csv") for url in request_log)
    assert foreign_requests(request_log, live_server) == [], "requests left the site"
