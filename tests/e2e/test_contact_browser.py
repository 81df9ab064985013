"""The "Let's connect" form in a real browser: a visitor fills it, gets it wrong, corrects it.

What issue 3 asks to see: a headless Chromium filling and submitting the form as a person
would, with a failed validation and its correction, and the lead that arrives in the database.
"""

import re

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from app.extensions import db
from app.leads.models import Lead, OutboxMessage
from tests.e2e.browser import foreign_requests, watch_errors

NOTIFY_TO = ["sales@agency.test", "founder@agency.test"]
REFERENCE = re.compile(r"LC-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")
THANKS_URL = re.compile(r"/contact/thanks/(LC-[0-9A-Z]{4}-[0-9A-Z]{4})$")
CONSENT_LABEL = re.compile(r"^I agree that .* privacy policy")
CONSENT_TEXT = (
    "I agree that Test Agency may store these details to reply to me, "
    "as described in the privacy policy."
)

MESSAGE = "We are launching a new sensor and need a campaign.\nCan we talk next week?"
COMPANY = "Analytical Engines Ltd"
PHONE = "+44 20 7946 0000"

# Reports CSP violations on the console, where the error watch below sees them.
CSP_TO_CONSOLE = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(
    `CSP violation: ${event.effectiveDirective} blocked ${event.blockedURI || "(inline)"}`
    + ` in ${event.sourceFile || event.documentURI}:${event.lineNumber}`
  );
});
"""


@pytest.fixture
def app_config(app_config):
    """No minimum fill time (a test types faster than a person) and two staff recipients."""
    app_config.update(FORM_MIN_SECONDS=0, LEADS_NOTIFY_TO=NOTIFY_TO)
    return app_config


# --- Helpers ----------------------------------------------------------------------------


def contact_form(page):
    return page.locator("form[data-contact-form]")


def field(form, label):
    return form.get_by_label(label, exact=True)


def consent_box(form):
    return form.get_by_role("checkbox", name=CONSENT_LABEL)


def send(form):
    form.get_by_role("button", name="Send message").click()


def error_summary(page):
    return page.get_by_role("alert").filter(has=page.get_by_role("heading"))


def reference_from_thanks_page(page):
    expect(page).to_have_url(THANKS_URL)
    reference = THANKS_URL.search(page.url).group(1)
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you, your message has arrived")
    expect(page.locator(".reference__code")).to_have_text(reference)
    return reference


def stored_leads():
    """Leads as the database has them now (the live server commits in its own thread)."""
    db.session.rollback()  # ends any read transaction of this thread and expires everything
    return db.session.scalars(sa.select(Lead).order_by(Lead.id)).all()


def outbox_of(lead):
    return db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.lead_id == lead.id).order_by(OutboxMessage.id)
    ).all()


def arrive_on_post_from_a_utm_link(page, live_server, slug):
    """The listing first (it becomes the referrer), then a campaign link to the post."""
    listing = f"{live_server}/posts/?x"
    post_url = f"{live_server}/posts/{slug}?utm_source=linkedin&utm_campaign=launch"
    assert page.goto(listing).status == 200
    # A link as a campaign would place it; following it makes the listing the referrer.
    page.evaluate(
        """url => {
            const link = document.createElement("a");
            link.href = url;
            link.textContent = "Read the launch story";
            document.querySelector("main").prepend(link);
        }""",
        post_url,
    )
    with page.expect_navigation():
        page.get_by_role("link", name="Read the launch story").click()
    expect(page).to_have_url(post_url)
    assert page.evaluate("document.referrer") == listing
    return post_url, listing


def fail_then_correct(page, live_server, slug):
    """The visitor's whole journey on a post page; returns (reference, post URL, referrer)."""
    post_url, listing = arrive_on_post_from_a_utm_link(page, live_server, slug)

    get_in_touch = page.get_by_role("region", name="Get in touch", exact=True)
    get_in_touch.get_by_role("heading", name="Get in touch").scroll_into_view_if_needed()
    expect(get_in_touch.get_by_role("heading", name="Get in touch")).to_be_in_viewport()
    form = contact_form(get_in_touch)

    # First try: the name forgotten and the address cut short.
    field(form, "Email address").fill("ada@")
    field(form, "Company (optional)").fill(COMPANY)
    field(form, "How can we help?").fill(MESSAGE)
    consent_box(form).check()
    with page.expect_navigation() as navigation:
        send(form)
    assert navigation.value.status == 422
    expect(page).to_have_title(re.compile(r"^Check your message: "))

    summary = error_summary(page)
    expect(summary).to_be_focused()  # site.js moves focus there so it is read out first
    expect(summary).to_be_in_viewport()
    assert page.evaluate("document.activeElement.matches('[data-error-summary]')")
    expect(summary.get_by_role("heading")).to_have_text("There are 2 problems with your message")
    problems = summary.get_by_role("link")
    expect(problems).to_have_count(2)
    expect(problems.nth(0)).to_have_text("Enter your name.")
    expect(problems.nth(0)).to_have_attribute("href", "#contact-name")
    expect(problems.nth(1)).to_have_text(re.compile(r"^Enter a valid email address: "))
    expect(problems.nth(1)).to_have_attribute("href", "#contact-email")

    form = contact_form(page)
    name, email = field(form, "Your name"), field(form, "Email address")
    for control, message in ((name, "Enter your name."), (email, "Enter a valid email address")):
        expect(control).to_have_attribute("aria-invalid", "true")
        expect(control).to_have_accessible_description(re.compile(re.escape(message)))
    for label in ("Company (optional)", "Phone (optional)", "How can we help?"):
        expect(field(form, label)).not_to_have_attribute("aria-invalid", "true")
    # What they typed is still there.
    expect(email).to_have_value("ada@")
    expect(field(form, "Company (optional)")).to_have_value(COMPANY)
    expect(field(form, "How can we help?")).to_have_value(MESSAGE)
    expect(consent_box(form)).to_be_checked()

    problems.filter(has_text="Enter your name").click()
    expect(name).to_be_focused()
    expect(page).to_have_url(re.compile(r"#contact-name$"))

    # The correction: a name, the full address (typed with capitals), consent confirmed.
    page.keyboard.type("Ada Lovelace")
    email.fill("Ada.Lovelace@EXAMPLE.org")
    consent_box(form).check()
    with page.expect_navigation():
        send(form)
    return reference_from_thanks_page(page), post_url, listing


# --- The tests ----------------------------------------------------------------------------


def test_visitor_fails_validation_corrects_it_and_the_lead_arrives_with_its_attribution(
    page, live_server, demo_content
):
    slug = demo_content[0].slug

    reference, post_url, listing = fail_then_correct(page, live_server, slug)

    assert REFERENCE.fullmatch(reference)
    leads = stored_leads()
    assert [lead.reference for lead in leads] == [reference], "exactly one lead, this one"
    lead = leads[0]
    assert lead.status == "new" and lead.spam_reason is None
    assert (lead.name, lead.email, lead.company, lead.phone) == (
        "Ada Lovelace",
        "Ada.Lovelace@example.org",  # normalised: the domain in lower case
        COMPANY,
        "",
    )
    assert lead.message == MESSAGE
    assert (lead.source_url, lead.source_path) == (post_url, f"/posts/{slug}")
    assert (lead.utm_source, lead.utm_campaign) == ("linkedin", "launch")
    assert (lead.utm_medium, lead.utm_term, lead.utm_content) == ("", "", "")
    assert lead.page_referrer == listing
    assert lead.user_agent and lead.user_agent == page.evaluate("navigator.userAgent")
    assert lead.consent_text == CONSENT_TEXT
    assert lead.consent_version
    messages = outbox_of(lead)
    assert sorted((m.kind, m.recipient) for m in messages) == sorted(
        ("lead_notification", recipient) for recipient in NOTIFY_TO
    )
    assert {(m.status, m.attempts, m.sent_at) for m in messages} == {("pending", 0, None)}


def test_the_consent_stored_is_the_label_the_visitor_saw(page, live_server):
    assert page.goto("/contact").status == 200
    label = page.locator("label[for='contact-consent']")
    expect(label).to_have_text(CONSENT_TEXT)
    expect(label.get_by_role("link", name="privacy policy")).to_have_attribute("href", "/privacy")


def test_a_reader_seeing_the_form_takes_a_token_of_their_own(new_context, live_server):
    """The page may be a cached copy whose token every reader got, dated when it was made: the
    reader's own is dated when the form came into view. A form further down the page waits
    until the reader gets there."""
    page = new_context(viewport={"width": 1280, "height": 600}).new_page()
    with page.expect_response(lambda response: "/contact/form-token" in response.url) as answer:
        assert page.goto("/contact").status == 200
    assert answer.value.ok
    form = contact_form(page)
    expect(form.locator("input[name='contact-rendered_at']")).to_have_value(
        answer.value.json()["token"]
    )
    field(form, "Your name").fill("Ada Lovelace")
    field(form, "Email address").fill("ada@example.org")
    field(form, "How can we help?").fill(MESSAGE)
    consent_box(form).check()
    form.get_by_role("button", name="Send message").click()
    expect(page).to_have_url(THANKS_URL)
    assert len(stored_leads()) == 1

    tokens_taken = []
    page.on("request", lambda request: tokens_taken.append(request.url))
    page.goto("/")
    page.wait_for_load_state("networkidle")
    assert not any("/contact/form-token" in url for url in tokens_taken)
    with page.expect_response(lambda response: "/contact/form-token" in response.url):
        contact_form(page).scroll_into_view_if_needed()


def test_keyboard_only_visitor_tabs_through_the_fields_in_order_and_sends(page, live_server):
    assert page.goto("/contact").status == 200
    form = contact_form(page)
    expect(form.locator("[name='contact-website']")).to_have_count(1)  # the honeypot is there
    field(form, "Your name").focus()

    typing = {
        "contact-name": "Grace Hopper",
        "contact-email": "grace@example.org",
        "contact-company": "Compilers Inc",
        "contact-phone": "+1 202 555 0100",
        "contact-message": "We need help explaining our new compiler to buyers.",
    }
    visited = []
    for _ in range(20):  # the form has fewer stops; a runaway loop fails below
        focused = page.evaluate(
            """() => {
                const el = document.activeElement;
                if (el.id) return el.id;
                return `${el.tagName.toLowerCase()}:${el.textContent.trim()}`;
            }"""
        )
        visited.append(focused)
        if focused in typing:
            page.keyboard.type(typing[focused])
        elif focused == "contact-consent":
            page.keyboard.press("Space")
        if focused == "button:Send message":
            break
        page.keyboard.press("Tab")

    assert "contact-website" not in visited, "the honeypot must never take focus"
    fields_in_order = [
        "contact-name",
        "contact-email",
        "contact-company",
        "contact-phone",
        "contact-message",
        "contact-consent",
    ]
    # The privacy policy link inside the consent label may be a stop of its own.
    assert visited in (
        [*fields_in_order, "button:Send message"],
        [*fields_in_order, "a:privacy policy", "button:Send message"],
    ), visited
    expect(consent_box(form)).to_be_checked()

    with page.expect_navigation():
        page.keyboard.press("Enter")
    reference = reference_from_thanks_page(page)

    [lead] = stored_leads()
    assert lead.reference == reference
    assert (lead.name, lead.email, lead.company, lead.phone) == (
        "Grace Hopper",
        "grace@example.org",
        "Compilers Inc",
        "+1 202 555 0100",
    )
    assert lead.status == "new"


def test_without_javascript_the_form_sends_and_the_referer_names_the_page(new_context, live_server):
    context = new_context(java_script_enabled=False)
    page = context.new_page()
    assert page.goto("/contact").status == 200
    form = contact_form(page)

    field(form, "Your name").fill("Ada Lovelace")
    field(form, "Email address").fill("ada@example.org")
    field(form, "Phone (optional)").fill(PHONE)
    field(form, "How can we help?").fill(MESSAGE)
    consent_box(form).check()
    with page.expect_navigation():
        send(form)
    reference = reference_from_thanks_page(page)

    [lead] = stored_leads()
    assert lead.reference == reference
    assert lead.status == "new"
    assert (lead.source_url, lead.source_path) == (f"{live_server}/contact", "/contact")
    assert lead.page_referrer == ""  # only the page's script can report it
    assert (lead.utm_source, lead.utm_campaign) == ("", "")
    assert lead.phone == PHONE
    assert context.cookies() == []


def test_the_visit_sets_no_cookie_logs_no_error_and_never_leaves_the_site(
    new_context, live_server, request_log, demo_content
):
    context = new_context()
    context.add_init_script(CSP_TO_CONSOLE)
    page = context.new_page()
    error_statuses = []
    errors = watch_errors(page, error_statuses)

    reference, _, _ = fail_then_correct(page, live_server, demo_content[0].slug)
    page.wait_for_load_state("networkidle")

    assert [lead.reference for lead in stored_leads()] == [reference]
    assert context.cookies() == []
    assert errors == [], "console errors or CSP violations during the visit"
    # The only error status the browser saw is the deliberate 422 of the failed try.
    assert error_statuses == [(422, f"{live_server}/contact")]
    assert any(url.startswith(f"{live_server}/contact/thanks/") for url in request_log)
    assert foreign_requests(request_log, live_server) == [], "requests left the site"
