"""The "Let's connect" form: one class, rendered on the home page, every post and /contact."""

import re

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, StringField, TelField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

CONSENT_VERSION = "privacy-2026-11"
CONSENT_TEXT = (
    "I agree that {site} may store the details I give here to reply to my enquiry, "
    "as described in the privacy policy."
)
LIMITS = {"name": 100, "email": 254, "company": 150, "phone": 40, "message": 5000}

_control_characters = re.compile(r"[\x00-\x1f\x7f]")
_message_control_characters = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def single_line(form, field):
    if field.data and _control_characters.search(field.data):
        raise ValidationError(f"{field.label.text} must be a single line of text.")


def multi_line(form, field):
    if field.data and _message_control_characters.search(field.data):
        raise ValidationError("Your message contains characters we cannot accept.")


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


def strip(value):
    return value.strip() if isinstance(value, str) else value


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

    name = StringField(
        "Your name",
        filters=[strip],
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
        filters=[strip],
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
                message="Enter a phone number using digits, spaces and + ( ) - only.",
            ),
        ],
    )
    message = TextAreaField(
        "How can we help?",
        filters=[strip],
        validators=[
            DataRequired("Tell us a little about what you need."),
            length("message", "Your message"),
            multi_line,
        ],
    )
    consent = BooleanField(
        "I agree to the privacy policy",
        validators=[DataRequired("Please agree to the privacy policy so we can reply.")],
    )
    # Honeypot: hidden from people, tempting to bots that fill every field.
    website = StringField("Leave this field empty")
    rendered_at = HiddenField()
    source_page = HiddenField(validators=[Optional(), Length(max=2000)])
    page_referrer = HiddenField(validators=[Optional(), Length(max=2000)])


def consent_text():
    return CONSENT_TEXT.format(site=current_app.config["SITE_NAME"])
