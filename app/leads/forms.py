"""The "Let's connect" form: one class, rendered on the home page, every post and /contact."""

import re

from email_validator import EmailNotValidError, validate_email
from flask import current_app, url_for
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import BooleanField, EmailField, HiddenField, StringField, TelField, TextAreaField
from wtforms.validators import (
    DataRequired,
    Length,
    Optional,
    Regexp,
    StopValidation,
    ValidationError,
)

from app import validation
from app.validation import drop_invisible, strip, unix_newlines

CONSENT_VERSION = "privacy-2026-11"
# What the person agrees to, shown as the checkbox's label and stored with the lead.
CONSENT_TEXT = (
    "I agree that {site} may store these details to reply to me, as described in the "
    "{privacy_policy}."
)
# What the consent checkbox sends when ticked (WTForms' own default for a BooleanField).
TICKED = "y"
CONSENT_MISSING = "Please agree to the privacy policy so we can reply."
LIMITS = {"name": 100, "email": 254, "company": 150, "phone": 40, "message": 5000}

single_line = validation.single_line(
    "{label} must be a single line of text.",
    characters=validation.CONTROL_CHARACTERS_AND_SEPARATORS,
)
multi_line = validation.refuse(
    validation.MULTI_LINE_CONTROL_CHARACTERS, "Your message contains characters we cannot accept."
)


def deliverable_email(form, field):
    """Check syntax, store the normalised address; a DNS check only where configured."""
    config = current_app.config
    try:
        checked = validate_email(
            field.data or "",
            check_deliverability=config["EMAIL_CHECK_DELIVERABILITY"],
            timeout=config["EMAIL_DNS_TIMEOUT"],
        )
    except EmailNotValidError as error:
        raise ValidationError(f"Enter a valid email address: {error}") from error
    field.data = checked.normalized


def ticked(form, field):
    """Consent is the value the ticked box sends; "NO", "off" or "false" from a script is not."""
    if field.raw_data != [TICKED]:
        field.data = False  # shown again unticked
        raise StopValidation(CONSENT_MISSING)


def length(name, label):
    return Length(
        max=LIMITS[name], message=f"{label} must be {LIMITS[name]:,} characters or fewer."
    )


class ContactForm(FlaskForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, prefix="contact", **kwargs)

    class Meta:
        # The form sits on cookie-free, cacheable pages: no session-bound CSRF token.
        # Cross-site posts are refused by the Origin/Sec-Fetch-Site check instead.
        csrf = False

    # Invisible characters first: a name of only zero-width spaces is an empty one.
    name = StringField(
        "Your name",
        filters=[drop_invisible, strip],
        validators=[DataRequired("Enter your name."), length("name", "Your name"), single_line],
    )
    email = EmailField(
        "Email address",
        filters=[strip],
        validators=[
            DataRequired("Enter your email address."),
            length("email", "Your email address"),
            single_line,
            deliverable_email,
        ],
    )
    company = StringField(
        "Company",
        filters=[drop_invisible, strip],
        validators=[Optional(), length("company", "Company"), single_line],
    )
    phone = TelField(
        "Phone",
        filters=[strip],
        validators=[
            Optional(),
            length("phone", "Phone"),
            Regexp(
                r"^[0-9+()./\s-]*(?:(?:ext\.?|x)\s*[0-9]+)?$",
                flags=re.IGNORECASE,
                message="Enter a phone number using digits, spaces and + ( ) - only.",
            ),
        ],
    )
    message = TextAreaField(
        "How can we help?",
        filters=[unix_newlines, strip],
        validators=[
            DataRequired("Tell us a little about what you need."),
            length("message", "Your message"),
            multi_line,
        ],
    )
    consent = BooleanField(
        "I agree to the privacy policy",
        validators=[DataRequired(CONSENT_MISSING), ticked],
        # Rendered again after an error, the box still sends its own value.
        render_kw={"value": TICKED},
    )
    # Honeypot: hidden from people, tempting to bots that fill every field.
    website = StringField("Leave this field empty")
    rendered_at = HiddenField()
    # Filled by the page's script; nobody can correct them, so they are never refused:
    # the service keeps what fits.
    source_page = HiddenField()
    page_referrer = HiddenField()


def consent_text():
    return CONSENT_TEXT.format(
        site=current_app.config["SITE_NAME"], privacy_policy="privacy policy"
    )


def consent_label():
    """The consent text as the form shows it, linking to the privacy policy."""
    link = Markup('<a href="{}">privacy policy</a>').format(url_for("public.privacy"))
    # A constant of ours; format() escapes what it inserts.
    text = Markup(CONSENT_TEXT)  # noqa: S704
    return text.format(site=current_app.config["SITE_NAME"], privacy_policy=link)
