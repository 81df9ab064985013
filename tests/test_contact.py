"""The "Let's connect" form: where it appears, what a lead stores, and every kind of bad input."""

import io
import re
import time
import uuid
from itertools import count
from urllib.parse import urlencode

import dns.resolver
import html5lib
import pytest
import redis
import sqlalchemy as sa
from itsdangerous import TimestampSigner
from werkzeug.test import encode_multipart

from app.extensions import db
from app.leads.forms import consent_text
from app.leads.models import Lead, OutboxMessage, new_reference
from app.leads.protection import read_render_token
from tests.conftest import SITE_URL, delete_redis_keys

SECRET = "test-secret"  # conftest's SECRET_KEY
SALT = "contact-form-rendered-at"
REFERENCE = re.compile(r"LC-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")
FIELD_NAMES = [
    "contact-name",
    "contact-email",
    "contact-company",
    "contact-phone",
    "contact-message",
    "contact-consent",
    "contact-website",
    "contact-rendered_at",
    "contact-source_page",
    "contact-page_referrer",
]
LIMITS = {"name": 100, "email": 254, "company": 150, "phone": 40, "message": 5000}
VALID = {
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "company": "Analytical Engines Ltd",
    "phone": "+44 20 7946 0958",
    "message": "We are launching a solid-state battery separator and need a campaign.",
    "consent": "y",
}
UNCONFIRMED_NOTICE = "We could not confirm that this form came from our website"
OWN_SITE = "This form can only be sent from our own website."
REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def app_config(app_config):
    """Most tests here post many times; the rate limit has tests of its own.

    (Not RATELIMIT_ENABLED=False: the Limiter is one object for the whole process, and
    once an app disables it, it stays disabled for every app made after.)
    """
    return {**app_config, "CONTACT_RATE_LIMIT": "1000 per minute"}


def render_token(seconds_ago=60, secret=SECRET):
    """A render token as the form carries it, signed `seconds_ago` seconds back."""

    class Signer(TimestampSigner):
        def get_timestamp(self):
            return int(time.time() - seconds_ago)

    return Signer(secret, salt=SALT).sign(uuid.uuid4().hex).decode()


def form_data(**values):
    """A valid submission with `values` changed; a value of None leaves the field out."""
    fields = {"rendered_at": render_token(), **VALID, **values}
    return {f"contact-{name}": value for name, value in fields.items() if value is not None}


def submit(client, headers=None, **values):
    return client.post("/contact", data=form_data(**values), headers=headers or {})


def leads():
    return db.session.scalars(sa.select(Lead).order_by(Lead.id)).all()


def only_lead():
    stored = leads()
    assert len(stored) == 1
    return stored[0]


def outbox_size():
    return db.session.scalar(sa.select(sa.func.count(OutboxMessage.id)))


def parse(response):
    return html5lib.parse(response.text, namespaceHTMLElements=False)


def contact_forms(tree):
    return tree.findall(".//form[@data-contact-form]")


def control(tree, name):
    return tree.find(f".//*[@name='contact-{name}']")


def value_of(tree, name):
    element = control(tree, name)
    if element.tag == "textarea":
        return element.text or ""
    return element.get("value", "")


def text_of(element):
    return " ".join("".join(element.itertext()).split())


def error_of(tree, name):
    element = tree.find(f".//*[@id='contact-{name}-error']")
    return None if element is None else text_of(element).removeprefix("Error: ")


def summary_links(tree):
    summary = tree.find(".//*[@data-error-summary]")
    if summary is None:
        return []
    return [(link.get("href"), text_of(link)) for link in summary.iter("a")]


def assert_refused_with(response, name, message):
    assert response.status_code == 422
    tree = parse(response)
    assert error_of(tree, name) == message
    assert (f"#contact-{name}", message) in summary_links(tree)
    assert leads() == []


def assert_private_error_page(response, status, message):
    assert response.status_code == status
    assert message in response.text
    assert 'class="site-footer"' in response.text  # the styled page, not a bare error
    assert "Set-Cookie" not in response.headers
    assert not response.cache_control.public
    assert response.cache_control.no_store


# Where the form appears


def test_one_form_with_the_same_fields_on_contact_home_and_every_post(client, demo_content):
    urls = ["/contact", "/", *(f"/posts/{post.slug}" for post in demo_content)]
    for url in urls:
        tree = parse(client.get(url))
        forms = contact_forms(tree)
        assert len(forms) == 1, url
        form = forms[0]
        assert (form.get("method"), form.get("action")) == ("post", "/contact"), url
        names = [element.get("name") for element in form.iter() if element.get("name")]
        assert names == FIELD_NAMES, url


def test_fields_show_their_limits_and_consent_links_to_the_privacy_policy(client):
    tree = parse(client.get("/contact"))

    for name, limit in LIMITS.items():
        assert control(tree, name).get("maxlength") == str(limit), name
    message_hint = tree.find(".//*[@id='contact-message-hint']")
    assert "Up to 5,000 characters." in text_of(message_hint)
    assert "contact-message-hint" in control(tree, "message").get("aria-describedby")
    consent = control(tree, "consent")
    assert consent.get("type") == "checkbox"
    label = tree.find(".//label[@for='contact-consent']")
    assert [link.get("href") for link in label.iter("a")] == ["/privacy"]
    assert control(tree, "rendered_at").get("type") == "hidden"
    assert read_render_token(value_of(tree, "rendered_at")) is not None


def test_the_consent_stored_is_the_consent_shown(client):
    label = parse(client.get("/contact")).find(".//label[@for='contact-consent']")

    submit(client)

    lead = only_lead()
    assert lead.consent_text == text_of(label)
    assert lead.consent_text.startswith("I agree that Test Agency may store")
    assert lead.consent_version


def test_the_consent_label_escapes_the_site_name(make_app):
    app = make_app(SITE_NAME="R&D <Labs>")

    response = app.test_client().get("/contact")

    assert "I agree that R&amp;D &lt;Labs&gt; may store these details" in response.text
    with app.test_request_context():
        assert consent_text() == (
            "I agree that R&D <Labs> may store these details to reply to me, "
            "as described in the privacy policy."
        )


# A valid submission


def test_valid_submission_stores_the_lead_and_redirects_to_its_reference(client):
    response = submit(
        client,
        email="Ada@EXAMPLE.com",
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0"},
    )

    lead = only_lead()
    assert response.status_code == 303
    assert response.headers["Location"] == f"/contact/thanks/{lead.reference}"
    assert REFERENCE.fullmatch(lead.reference)
    assert lead.email == "Ada@example.com"
    assert (lead.name, lead.company, lead.phone) == (
        "Ada Lovelace",
        "Analytical Engines Ltd",
        "+44 20 7946 0958",
    )
    assert lead.message == VALID["message"]
    assert lead.status == "new" and lead.spam_reason is None
    assert lead.consent_version == "privacy-2026-11"
    assert "Test Agency" in lead.consent_text and "privacy policy" in lead.consent_text
    assert lead.user_agent == "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0"
    assert lead.created_at is not None
    assert [(m.kind, m.recipient) for m in lead.messages] == [
        ("lead_notification", "hello@example.com")
    ]


def test_source_and_utm_come_from_the_referer_without_javascript(client):
    page = f"{SITE_URL}/posts/solid-state?utm_source=newsletter&utm_medium=email"
    page += "&utm_campaign=launch&utm_term=battery&utm_content=hero"

    submit(client, headers={"Referer": page})

    lead = only_lead()
    assert (lead.source_url, lead.source_path) == (page, "/posts/solid-state")
    utm = (lead.utm_source, lead.utm_medium, lead.utm_campaign, lead.utm_term, lead.utm_content)
    assert utm == ("newsletter", "email", "launch", "battery", "hero")
    assert lead.page_referrer == ""


def test_source_comes_from_the_hidden_field_with_javascript(client):
    page = f"{SITE_URL}/posts/catl-market-share?utm_source=linkedin&utm_campaign=q3"

    submit(
        client,
        source_page=page,
        page_referrer="https://www.linkedin.com/feed/",
        headers={"Referer": f"{SITE_URL}/posts/catl-market-share"},
    )

    lead = only_lead()
    assert (lead.source_url, lead.source_path) == (page, "/posts/catl-market-share")
    assert (lead.utm_source, lead.utm_campaign) == ("linkedin", "q3")
    assert lead.page_referrer == "https://www.linkedin.com/feed/"


def test_a_source_page_on_another_site_is_not_trusted(client):
    submit(
        client,
        source_page="https://evil.example/?utm_source=spoofed",
        headers={"Referer": f"{SITE_URL}/about"},
    )

    lead = only_lead()
    assert (lead.source_url, lead.source_path, lead.utm_source) == (
        f"{SITE_URL}/about",
        "/about",
        "",
    )


@pytest.mark.parametrize(
    ("source_page", "referer"),
    [("http://[", "http://[::1"), ("not a url at all", "://"), ("https://agency.test:99999/", "")],
)
def test_malformed_page_addresses_are_ignored(client, source_page, referer):
    response = submit(client, source_page=source_page, headers={"Referer": referer})

    assert response.status_code == 303
    assert only_lead().source_url == ""


def test_a_very_long_page_address_never_blocks_the_form(client):
    page = f"{SITE_URL}/posts/x?utm_source=ads&fbclid={'x' * 3000}"

    response = submit(
        client, source_page=page, page_referrer=f"https://search.example/?q={'q' * 3000}"
    )

    assert response.status_code == 303
    lead = only_lead()
    assert lead.source_url == page[:2000]
    assert lead.utm_source == "ads"
    assert len(lead.page_referrer) == 2000


def test_control_characters_in_page_addresses_are_dropped(client):
    """PostgreSQL cannot store NUL in text: an address carrying one must not cost the lead."""
    response = submit(
        client,
        source_page=f"{SITE_URL}/?utm_source=news%00letter&utm_medium=e\x00mail",
        page_referrer="https://ref.example/\x00page",
    )

    assert response.status_code == 303
    lead = only_lead()
    assert (lead.utm_source, lead.utm_medium) == ("newsletter", "email")
    assert lead.page_referrer == "https://ref.example/page"


def test_references_are_random_not_sequential(client):
    first, second = submit(client), submit(client, message="A second question.")

    references = [lead.reference for lead in leads()]
    assert [first.headers["Location"], second.headers["Location"]] == [
        f"/contact/thanks/{reference}" for reference in references
    ]
    assert all(REFERENCE.fullmatch(reference) for reference in references)
    assert references[0] != references[1]
    many = {new_reference() for _ in range(500)}
    assert len(many) == 500


def test_thanks_page_shows_the_reference_and_what_happens_next(client):
    location = submit(client).headers["Location"]

    response = client.get(location)

    assert response.status_code == 200
    assert only_lead().reference in response.text
    assert "What happens next" in response.text
    assert response.cache_control.no_store
    assert not response.cache_control.public
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("reference", ["LC-0000-0000", "nothing", "%00", "x" * 300])
def test_unknown_reference_is_a_styled_404(client, reference):
    response = client.get(f"/contact/thanks/{reference}")

    assert response.status_code == 404
    assert "We cannot find that page" in response.text


def test_no_cookie_is_ever_set_on_contact(client):
    responses = [
        client.get("/contact"),
        submit(client),
        submit(client, name=""),
        submit(client, rendered_at=None),
        submit(client, headers={"Sec-Fetch-Site": "cross-site"}),
        client.post("/contact", json={"name": "Ada"}),
        submit(client, message="x" * 100_000),
        client.get(f"/contact/thanks/{leads()[0].reference}"),
        client.get("/contact/thanks/LC-0000-0000"),
    ]

    assert [r.status_code for r in responses] == [200, 303, 422, 422, 403, 415, 413, 200, 404]
    for response in responses:
        assert "Set-Cookie" not in response.headers, response.status


# Validation errors


def test_empty_submission_lists_every_problem_and_marks_each_field(client):
    response = client.post("/contact", data={"contact-rendered_at": render_token()})

    assert response.status_code == 422
    assert response.cache_control.no_store
    tree = parse(response)
    expected = {
        "name": "Enter your name.",
        "email": "Enter your email address.",
        "message": "Tell us a little about what you need.",
        "consent": "Please agree to the privacy policy so we can reply.",
    }
    assert summary_links(tree) == [(f"#contact-{name}", text) for name, text in expected.items()]
    assert "There are 4 problems with your message" in response.text
    for name, message in expected.items():
        assert error_of(tree, name) == message
        element = control(tree, name)
        assert element.get("id") == f"contact-{name}"
        assert element.get("aria-invalid") == "true"
        assert f"contact-{name}-error" in element.get("aria-describedby").split()
    for name in ("company", "phone"):
        assert control(tree, name).get("aria-invalid") is None
        assert error_of(tree, name) is None
    assert UNCONFIRMED_NOTICE not in response.text
    assert leads() == []


def test_entered_values_are_kept_when_there_is_an_error(client):
    response = submit(client, email="ada at example dot com")

    tree = parse(response)
    assert response.status_code == 422
    assert error_of(tree, "email").startswith("Enter a valid email address")
    assert summary_links(tree)[0][0] == "#contact-email"
    for name in ("name", "company", "phone", "message"):
        assert value_of(tree, name) == VALID[name]
    assert value_of(tree, "email") == "ada at example dot com"
    assert control(tree, "consent").get("checked") is not None


def test_a_form_error_keeps_the_render_time_so_a_quick_correction_is_not_spam(client):
    """Ticking the forgotten box and sending again takes a second; that is a person."""
    token = render_token(seconds_ago=60)
    first = parse(submit(client, consent=None, rendered_at=token))
    assert value_of(first, "rendered_at") == token

    response = submit(client, rendered_at=value_of(first, "rendered_at"))

    assert response.status_code == 303
    assert only_lead().status == "new"


# Lengths: every field at its limit passes, one more character fails and names the limit


def long_email(length):
    domain = f"{'b' * 63}.{'c' * 63}.{'d' * (length - 64 - 1 - 63 - 1 - 63 - 1 - 4)}.com"
    return f"{'a' * 64}@{domain}"


AT_LIMIT = {
    "name": "N" * 100,
    "email": long_email(254),
    "company": "C" * 150,
    "phone": "1" * 40,
    "message": "M" * 5000,
}
OVER_LIMIT = {
    "name": ("N" * 101, "Your name must be 100 characters or fewer."),
    "email": (long_email(255), "Your email address must be 254 characters or fewer."),
    "company": ("C" * 151, "Company must be 150 characters or fewer."),
    "phone": ("1" * 41, "Phone must be 40 characters or fewer."),
    "message": ("M" * 5001, "Your message must be 5,000 characters or fewer."),
}


@pytest.mark.parametrize("name", LIMITS)
def test_each_field_at_its_limit_is_accepted(client, name):
    value = AT_LIMIT[name]
    assert len(value) == LIMITS[name]

    response = submit(client, **{name: value})

    assert response.status_code == 303
    assert getattr(only_lead(), name) == value


@pytest.mark.parametrize("name", LIMITS)
def test_one_character_over_the_limit_is_refused_naming_the_limit(client, name):
    value, message = OVER_LIMIT[name]

    response = submit(client, **{name: value})

    assert_refused_with(response, name, message)
    assert value_of(parse(response), name) == value


def test_limits_count_characters_not_bytes(client):
    response = submit(client, name="🚀" * 100, company="Ж" * 150, message="漢" * 5000)

    assert response.status_code == 303
    lead = only_lead()
    assert (lead.name, lead.company, lead.message) == ("🚀" * 100, "Ж" * 150, "漢" * 5000)


def test_line_breaks_count_once_as_in_the_browser(client):
    """Browsers count a line break as one character for maxlength but send it as CR LF."""
    typed = ("x" * 99 + "\n") * 50
    assert len(typed) == 5000

    response = submit(client, message=typed.replace("\n", "\r\n"))

    assert response.status_code == 303
    assert only_lead().message == typed.rstrip("\n")


# Wrong types


def test_the_ticked_box_s_own_value_is_consent(client):
    assert submit(client, consent="y").status_code == 303


@pytest.mark.parametrize("value", [None, "", "false", "0", "off", "no", "on", "maybe", "1"])
def test_any_other_consent_value_is_refused(client, value):
    response = submit(client, consent=value)

    assert_refused_with(response, "consent", "Please agree to the privacy policy so we can reply.")


@pytest.mark.parametrize(
    ("values", "name", "message"),
    [
        ({"phone": "call me maybe"}, "phone", "Enter a phone number using digits, spaces and"),
        ({"email": "ada@"}, "email", "Enter a valid email address"),
        ({"email": "12345"}, "email", "Enter a valid email address"),
        ({"name": "   "}, "name", "Enter your name."),
        ({"message": "\n\t  \n"}, "message", "Tell us a little about what you need."),
    ],
)
def test_wrong_kinds_of_value_get_a_specific_message(client, values, name, message):
    response = submit(client, **values)

    assert response.status_code == 422
    assert error_of(parse(response), name).startswith(message)
    assert leads() == []


def test_a_file_in_place_of_a_text_field_is_a_missing_value(client):
    data = form_data(name=None) | {"contact-name": (io.BytesIO(b"Ada"), "name.txt")}

    response = client.post("/contact", data=data, content_type="multipart/form-data")

    assert_refused_with(response, "name", "Enter your name.")


# Hostile values


HOSTILE = {
    "name": '<b>Ada</b> "the" & <i>co</i>',
    "company": "'; DROP TABLE leads; --",
    "message": (
        "<script>alert('x')</script>\n<img src=x onerror=alert(1)>\n"
        "Robert'); DROP TABLE leads;-- {{ 7*7 }} ${7*7} %s"
    ),
}


def test_hostile_values_are_stored_verbatim(client):
    response = submit(client, **HOSTILE)

    assert response.status_code == 303
    lead = only_lead()
    assert (lead.name, lead.company, lead.message) == tuple(HOSTILE.values())
    assert db.session.scalar(sa.select(sa.func.count(Lead.id))) == 1  # the table survived


def test_hostile_values_are_rendered_escaped(client):
    response = submit(client, consent=None, **HOSTILE)

    assert response.status_code == 422
    tree = parse(response)
    for name, value in HOSTILE.items():
        assert value_of(tree, name) == value
    assert all(script.get("src") for script in tree.iter("script"))
    assert tree.find(".//img[@onerror]") is None
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in response.text


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("name", "Ada\r\nBcc: victim@example.com", "Your name must be a single line of text."),
        ("name", "Ada\nLovelace", "Your name must be a single line of text."),
        ("name", "Ada\rLovelace", "Your name must be a single line of text."),
        ("name", "Ada\u2028Lovelace", "Your name must be a single line of text."),
        ("name", "Ada\x85Lovelace", "Your name must be a single line of text."),
        ("name", "Ada\x00", "Your name must be a single line of text."),
        (
            "email",
            "ada@example.com\r\nBcc: victim@example.com",
            "Email address must be a single line of text.",
        ),
        ("email", "ada@example.com\nX-Injected: 1", "Email address must be a single line of text."),
        ("company", "Acme\r\nX-Injected: 1", "Company must be a single line of text."),
        ("message", "Hello\x00there", "Your message contains characters we cannot accept."),
    ],
)
def test_line_breaks_and_control_characters_are_refused(client, name, value, message):
    assert_refused_with(submit(client, **{name: value}), name, message)


# Unusual but valid: never refused, stored exactly


UNUSUAL_BUT_VALID = [
    {"name": "Siobhán O'Brien", "company": "O'Brien & Daughters"},
    {"name": "Jean-Luc Picard-Dupont", "company": "Société Générale d'Électronique"},
    {"name": "Zoë 🚀", "message": "Rocket science, literally 🚀🔋⚡ 👩🏽‍🔬"},
    {"name": "محمد عبد الله", "company": "شركة البطاريات", "message": "مرحبا، نحتاج إلى حملة."},
    {"name": "דוד כהן", "company": "חברת סוללות בע״מ", "message": "שלום! English mixed in."},
    {"name": "山田 太郎", "company": "株式会社テスト", "message": "固体電池のマーケティング。"},
    {"name": "Łukasz Żółć", "company": "Zakład Ćwiczeń"},
    {"name": "Nguyễn Văn Ánh", "company": "Công ty Pin Việt"},
    {"name": "Ævar Arnfjörð Bjarmason", "company": "Þróun ehf."},
    {"name": "Dr. Jane Q. Public, PhD", "company": "AT&T Labs / R&D (Europe)"},
    {"name": 'Ada "Countess" Lovelace', "company": "“Curly” ‘quotes’ — and dashes…"},  # noqa: RUF001
    {"name": "Ma", "company": "3M", "phone": "+1 (555) 123-4567 ext. 89"},
    {"phone": "+44 (0)20 7946 0958 Ext. 12"},
    {"phone": "555.123.4567 x12"},
    {"name": "Pneumonoultramicroscopicsilicovolcanoconiosis" * 2},
    {"message": "Supercalifragilistic" * 250},
    {"message": "Line one\n\nLine two\twith a tab\n- a list\n> a quote\n`code` *stars* _under_"},
    {"message": "Prices: 5 < 10 > 3 & 100% of €1,000 = £860; ½ ≠ ⅓; x² + y² = z²"},
    {"email": "o'brien+leads@example.co.uk"},
    {"email": "zoë@bücher.example"},
]


@pytest.mark.parametrize("values", UNUSUAL_BUT_VALID)
def test_unusual_but_valid_values_are_accepted_and_stored_exactly(client, values):
    response = submit(client, **values)

    assert response.status_code == 303, parse(response).find(".//*[@data-error-summary]")
    lead = only_lead()
    for name, value in values.items():
        assert getattr(lead, name) == value, name


# Bot defences


@pytest.mark.parametrize(
    "token",
    [None, "", "contact.forged.signature", render_token(secret="somebody-elses-secret")],
    ids=["missing", "empty", "garbage", "wrong-secret"],
)
def test_a_missing_or_forged_token_shows_the_form_again_with_a_fresh_one(client, token):
    response = submit(client, rendered_at=token, source_page=f"{SITE_URL}/posts/x")

    assert response.status_code == 422
    assert response.cache_control.no_store
    assert UNCONFIRMED_NOTICE in response.text
    tree = parse(response)
    for name in ("name", "email", "company", "phone", "message"):
        assert value_of(tree, name) == VALID[name]
    assert control(tree, "consent").get("checked") is not None
    assert value_of(tree, "source_page") == f"{SITE_URL}/posts/x"
    fresh = value_of(tree, "rendered_at")
    assert fresh != token
    assert 3 <= read_render_token(fresh).age_seconds < 8  # FORM_MIN_SECONDS before now
    assert summary_links(tree) == []
    assert leads() == []
    assert submit(client, rendered_at=fresh).status_code == 303
    assert only_lead().status == "new"


def test_a_form_shown_hours_ago_is_stored_on_its_first_send(client):
    """A page left open in a tab, or a copy a cache made hours ago: its age is no reason to
    turn the person away."""
    response = submit(client, rendered_at=render_token(seconds_ago=3 * 3600))

    assert response.status_code == 303
    assert only_lead().status == "new"


def test_a_form_sent_too_fast_is_stored_as_spam_and_thanked(client):
    response = submit(client, rendered_at=render_token(seconds_ago=0))

    lead = only_lead()
    assert response.status_code == 303
    assert lead.status == "spam"
    assert re.fullmatch(r"sent \d\.\d s after the form was shown to them", lead.spam_reason)
    assert outbox_size() == 0
    assert "What happens next" in client.get(response.headers["Location"]).text


def test_a_form_with_the_honeypot_filled_is_stored_as_spam(client):
    response = submit(client, website="https://cheap-seo.example")

    lead = only_lead()
    assert response.status_code == 303
    assert (lead.status, lead.spam_reason) == ("spam", "filled the hidden honeypot field")
    assert outbox_size() == 0


def test_a_form_sent_after_the_minimum_time_is_not_spam(client, app):
    response = submit(client, rendered_at=render_token(seconds_ago=app.config["FORM_MIN_SECONDS"]))

    assert response.status_code == 303
    assert only_lead().status == "new"
    assert outbox_size() == 1


def test_a_failed_form_keeps_the_page_it_was_first_sent_from(client):
    """Without JavaScript the second try comes from /contact; the first page still counts."""
    page = f"{SITE_URL}/posts/solid-state?utm_source=newsletter"
    first = parse(submit(client, name="", headers={"Referer": page}))
    assert value_of(first, "source_page") == page
    assert control(first, "source_page").get("data-page-url") is None

    submit(
        client,
        source_page=value_of(first, "source_page"),
        headers={"Referer": f"{SITE_URL}/contact"},
    )

    assert (only_lead().source_path, only_lead().utm_source) == ("/posts/solid-state", "newsletter")


# Refusals: 403, 413, 415


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": SITE_URL},
        {"Origin": "https://evil.example"},
        {"Origin": "https://agency.test.evil.example"},
        {"Origin": "null"},
    ],
)
def test_cross_site_posts_are_refused(client, headers):
    response = submit(client, headers=headers)

    assert_private_error_page(response, 403, OWN_SITE)
    assert leads() == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "same-origin", "Origin": SITE_URL},
        {"Sec-Fetch-Site": "none"},
        {"Origin": SITE_URL},
        {"Origin": "http://localhost"},  # the host the request came in on
    ],
)
def test_same_origin_and_origin_less_posts_are_accepted(client, headers):
    assert submit(client, headers=headers).status_code == 303
    assert len(leads()) == 1


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_a_two_megabyte_body_is_refused_with_413(client, encoding):
    data = form_data(message="x" * 2 * 1024 * 1024)
    if encoding == "urlencoded":
        body, content_type = urlencode(data), "application/x-www-form-urlencoded"
    else:
        # Encoded here: the test client would spool it to a file that it never closes.
        boundary, body = encode_multipart(data)
        content_type = f"multipart/form-data; boundary={boundary}"

    response = client.post("/contact", data=body, content_type=content_type)

    assert_private_error_page(response, 413, "larger than this page accepts")
    assert leads() == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"contact-name": "Ada"}', "application/json"),
        ("contact-name=Ada", "text/plain"),
        ("<name>Ada</name>", "application/xml"),
        ("contact-name=Ada", None),
    ],
)
def test_a_body_that_is_not_a_form_is_refused_with_415(client, body, content_type):
    response = client.post("/contact", data=body, content_type=content_type)

    message = "Send the form as application/x-www-form-urlencoded or multipart/form-data."
    assert_private_error_page(response, 415, message)
    assert leads() == []


def test_a_json_body_is_refused_with_415(client):
    response = client.post("/contact", json=form_data())

    assert_private_error_page(response, 415, "Send the form as application/x-www-form-urlencoded")


# Rate limit


@pytest.fixture(params=["memory://", REDIS_URL], ids=["memory", "redis"])
def limited_app(request, make_app):
    """An app allowing two contact POSTs a minute, its counters in memory or in Redis."""
    app = make_app(
        RATELIMIT_ENABLED=True,
        CONTACT_RATE_LIMIT="2 per minute",
        RATELIMIT_STORAGE_URI=request.param,
    )
    with app.app_context():
        yield app


@pytest.fixture
def new_client_address():
    """Makes addresses of this test alone: Redis keys from other runs never collide with them.

    (RATELIMIT_KEY_PREFIX would not do: Flask-Limiter keeps the first prefix it is given
    for the life of the process, so a per-test prefix leaks into every later app.)
    """
    made = []

    def new():
        # Groups without leading zeros: the /64 in the keys is written the same way.
        groups = [f"{0x1000 + uuid.uuid4().int % 0xF000:x}" for _ in range(2)]
        made.append(f"2001:db8:{groups[0]}:{groups[1]}::1")
        return made[-1]

    yield new
    for address in made:
        delete_redis_keys(REDIS_URL, f"*/{address.removesuffix('1')}*")  # its /64


@pytest.fixture
def client_address(new_client_address):
    return new_client_address()


def test_the_third_post_in_a_minute_gets_a_friendly_429(
    limited_app, client_address, new_client_address
):
    client = limited_app.test_client()
    client.environ_base["REMOTE_ADDR"] = client_address

    statuses = [submit(client, message=f"Question {number}").status_code for number in range(3)]

    assert statuses == [303, 303, 429]
    response = submit(client)
    assert response.status_code == 429
    assert "please wait 1 minute and send it again" in response.text
    assert value_of(parse(response), "message") == VALID["message"]
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert len(leads()) == 2
    assert all(client.get("/contact").status_code == 200 for _ in range(5))
    other_address = limited_app.test_client()
    same_network = limited_app.test_client()
    same_network.environ_base["REMOTE_ADDR"] = client_address.replace("::1", "::ab:cd")
    assert submit(same_network).status_code == 429
    other_address.environ_base["REMOTE_ADDR"] = new_client_address()
    assert submit(other_address).status_code == 303


def test_with_redis_storage_the_counters_are_kept_in_redis(make_app, client_address):
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=REDIS_URL)
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = client_address

    with app.app_context():
        assert submit(client).status_code == 303

    with redis.Redis.from_url(REDIS_URL) as connection:
        assert list(connection.scan_iter(f"*/{client_address.removesuffix('1')}/*"))


def test_when_redis_is_down_the_form_still_takes_leads(make_app, refusing_smtp_port):
    unreachable = f"redis://127.0.0.1:{refusing_smtp_port}/0"
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=unreachable)

    with app.app_context():
        assert submit(app.test_client()).status_code == 303
        assert len(leads()) == 1


# Caching and configuration


def test_pages_with_the_form_keep_a_stable_etag(client, make_post, monkeypatch):
    post = make_post()
    seconds = count(int(time.time()) - 100)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: next(seconds))
    url = f"/posts/{post.slug}"

    first, second = client.get(url), client.get(url)

    tokens = [value_of(parse(response), "rendered_at") for response in (first, second)]
    assert tokens[0] != tokens[1]
    assert first.headers["ETag"] == second.headers["ETag"]
    assert first.cache_control.public
    again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304


def test_dns_is_never_consulted_in_tests(app, client, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the email check went to the network")

    monkeypatch.setattr(dns.resolver.Resolver, "resolve", no_network)
    monkeypatch.setattr(dns.resolver, "get_default_resolver", no_network)
    assert app.config["EMAIL_CHECK_DELIVERABILITY"] is False

    response = submit(client, email="ada@no-such-domain-for-this-test.example.com")

    assert response.status_code == 303


def test_the_dns_check_when_configured_refuses_a_domain_that_does_not_exist(
    app, client, monkeypatch
):
    class Resolver:
        lifetime = None

        def resolve(self, domain, kind):
            raise dns.resolver.NXDOMAIN

    monkeypatch.setattr(dns.resolver, "get_default_resolver", Resolver)
    app.config["EMAIL_CHECK_DELIVERABILITY"] = True

    response = submit(client, email="ada@no-such-domain-for-this-test.example.com")

    assert response.status_code == 422
    assert "does not exist" in error_of(parse(response), "email")
