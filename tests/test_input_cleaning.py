"""Input that is refused or cleaned: consent only from the ticked box, names and subjects
without invisible characters, header text that reaches staff exactly as it was typed."""

import uuid

import pytest

from app.extensions import db
from app.leads.notifications import queue_notifications
from app.mail import one_line
from tests.conftest import deliver
from tests.test_contact import (
    assert_refused_with,
    control,
    form_data,
    leads,
    only_lead,
    parse,
    submit,
)
from tests.test_delivery import address

STAFF = "sales@agency.test"
# Bidi overrides and isolates, marks, zero-width space, word joiner, BOM.
INVISIBLE = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u200b\u2060\ufeff"
ENCODED_WORD = "=?utf-8?b?QWRtaW4=?="  # "Admin", as an RFC 2047 encoded word


@pytest.fixture
def app_config(app_config):
    """Many posts from one address: a limit of our own, counted under a prefix of our own."""
    return {
        **app_config,
        "CONTACT_RATE_LIMIT": "1000 per minute",
        "RATELIMIT_KEY_PREFIX": f"test-input-cleaning-{uuid.uuid4().hex}",
        "LEADS_NOTIFY_TO": [STAFF],
    }


# Consent


def test_the_ticked_box_value_is_consent(client):
    assert submit(client, consent="y").status_code == 303
    assert len(leads()) == 1


@pytest.mark.parametrize(
    "value", ["NO", "No", "nO", "False", "FALSE", "OFF", "Off", "on", "1", "true", "Y", " y", "y "]
)
def test_any_other_consent_value_is_refused_beside_the_box(client, value):
    response = submit(client, consent=value)

    assert_refused_with(response, "consent", "Please agree to the privacy policy so we can reply.")


def test_a_refused_consent_value_shows_the_box_unticked_with_its_own_value(client):
    tree = parse(submit(client, consent="NO"))

    box = control(tree, "consent")
    assert box.get("value") == "y"
    assert box.get("checked") is None


def test_a_consent_sent_twice_is_refused(client):
    data = {**form_data(), "contact-consent": ["y", "y"]}

    response = client.post("/contact", data=data)

    assert_refused_with(response, "consent", "Please agree to the privacy policy so we can reply.")


# Invisible characters


@pytest.mark.parametrize("field", ["name", "company"])
def test_names_lose_bidi_controls_and_zero_width_characters(client, field):
    typed = f"{INVISIBLE}Ada\u202e Love\u200blace\u2066{INVISIBLE}"

    assert submit(client, **{field: typed}).status_code == 303

    assert getattr(only_lead(), field) == "Ada Lovelace"


def test_a_name_of_invisible_characters_only_is_no_name(client):
    response = submit(client, name=INVISIBLE)

    assert_refused_with(response, "name", "Enter your name.")


@pytest.mark.parametrize(
    "name",
    [
        "Ada \U0001f469\u200d\U0001f52c",  # an emoji joined with a zero-width joiner
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian, with a non-joiner
    ],
)
def test_joiners_stay_in_a_name(client, name):
    assert submit(client, name=f"{name}\u200b\u202e").status_code == 303

    assert only_lead().name == name


def test_header_text_loses_invisible_characters():
    assert one_line(f"New enquiry:\u200b {INVISIBLE}Eve\u202e\n moc.live") == (
        "New enquiry: Eve moc.live"
    )


# Header text reaches staff as typed


@pytest.fixture
def notification(app, client, runner, smtp_server):
    """Send the form with these fields, deliver the staff notification, return it as parsed."""
    smtp_server.configure(app)

    def send(**fields):
        assert submit(client, **fields).status_code == 303
        deliver(runner)
        (received,) = smtp_server.wait_for(1)
        return received.message

    return send


def test_a_name_that_looks_like_an_encoded_word_shows_literally(notification):
    message = notification(name=ENCODED_WORD, company=ENCODED_WORD)

    reference = only_lead().reference
    expected = f"New enquiry: {ENCODED_WORD} ({ENCODED_WORD}) [{reference}]"
    assert message["Subject"] == expected
    assert address(message["Reply-To"]) == (ENCODED_WORD, "ada@example.com")
    assert "Admin" not in str(message["Subject"])


@pytest.mark.parametrize("other_text", ["Nunez", "Ñúñez"])
def test_an_encoded_word_in_a_long_subject_that_must_be_folded_shows_literally(
    notification, other_text
):
    name = " ".join([f"Ada{ENCODED_WORD}", *[other_text] * 9, ENCODED_WORD])

    message = notification(name=name)

    assert message["Subject"].startswith(f"New enquiry: {name} (")


def test_a_stored_name_with_invisible_characters_reaches_staff_without_them(
    app, runner, make_lead, smtp_server
):
    smtp_server.configure(app)
    lead = make_lead(name=f"Eve\u202e{INVISIBLE}gnp.exe", company=f"{INVISIBLE}Acme")
    queue_notifications(lead)
    db.session.commit()
    reference = lead.reference

    deliver(runner)

    (received,) = smtp_server.wait_for(1)
    message = received.message
    assert message["Subject"] == f"New enquiry: Evegnp.exe (Acme) [{reference}]"
    assert address(message["Reply-To"])[0] == "Evegnp.exe"
