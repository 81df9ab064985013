"""Defences of the public form that need no cookie: origin check, signed render time used
once, honeypot, and a limit on the leads one address may send."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from flask import abort, current_app, request
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from limits import parse_many
from sqlalchemy import select

from app.extensions import (
    DATABASE_UNAVAILABLE,
    client_network,
    db,
    limiter,
    seconds_until,
    shared_key,
)
from app.leads.models import Lead
from app.types import utcnow

FORM_CONTENT_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}
SAME_SITE_FETCHES = {"same-origin", "none"}
CONTACT_SCOPE = "contact"
ATTEMPTS_SCOPE = "contact-attempts"
USED_FORMS_KEY = "contact-token:"


class RenderTimeSigner(TimestampSigner):
    """Signs with the time the form was first shown, where that is known and not now."""

    def __init__(self, *args, shown_at=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.shown_at = shown_at

    def get_timestamp(self):
        return self.shown_at or super().get_timestamp()


def _signer(shown_at=None):
    return RenderTimeSigner(
        current_app.config["SECRET_KEY"], salt="contact-form-rendered-at", shown_at=shown_at
    )


def new_render_token(shown_at=None):
    """Signed render time of one form (now, or `shown_at` in Unix seconds); the random part
    makes every render's token its own."""
    return _signer(shown_at).sign(secrets.token_urlsafe(16)).decode()


@dataclass(frozen=True)
class RenderToken:
    """A valid form token, read once: its random value and when its form was shown."""

    value: bytes
    signed_at: datetime

    @property
    def age_seconds(self):
        return (utcnow() - self.signed_at).total_seconds()

    @property
    def shown_at(self):
        """In Unix seconds, as new_render_token takes it."""
        return int(self.signed_at.timestamp())

    @property
    def used_key(self):
        # The signed value, not the token's text: a signature read leniently (padding, stray
        # characters) would make one token many.
        digest = hashlib.sha256(self.value).hexdigest()
        return "/".join(shared_key(f"{USED_FORMS_KEY}{digest}"))


def read_render_token(token):
    """The RenderToken in `token`, or None if it is missing, forged or too old."""
    if not token:
        return None
    try:
        value, signed_at = _signer().unsign(
            token, max_age=current_app.config["FORM_MAX_AGE_SECONDS"], return_timestamp=True
        )
    except (SignatureExpired, BadSignature):
        return None
    return RenderToken(value, signed_at)


def refuse_cross_site_posts():
    """A browser tells us where a POST came from; anything from another site is refused."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        if fetch_site not in SAME_SITE_FETCHES:
            abort(403, "This form can only be sent from our own website.")
        return
    origin = request.headers.get("Origin")
    if origin is not None and origin not in allowed_origins():
        abort(403, "This form can only be sent from our own website.")


def allowed_origins():
    return {origin_of(current_app.config["SITE_URL"]), origin_of(request.host_url)}


def origin_of(url):
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def require_form_body():
    """Refuse bodies that are not a form (415) or too big (413) before parsing them."""
    request.max_content_length = current_app.config["CONTACT_MAX_BODY_BYTES"]
    if request.mimetype not in FORM_CONTENT_TYPES:
        abort(415, "Send the form as application/x-www-form-urlencoded or multipart/form-data.")


def spam_reason(form, token):
    if form.website.data:
        return "filled the hidden honeypot field"
    age = token.age_seconds
    if age < current_app.config["FORM_MIN_SECONDS"]:
        return f"sent {age:.1f} s after the form was shown"
    return None


def seconds_until_allowed(setting="CONTACT_RATE_LIMIT", scope=CONTACT_SCOPE):
    """Count one post against its sender's limits in `setting` (a lead, by default); None if
    it is within every limit, else the seconds until the limit it broke lets another through."""
    if not limiter.enabled:
        return None
    limits = sorted(parse_many(current_app.config[setting]))
    identifiers = shared_key(client_network(), scope)
    try:
        for limit in limits:
            if not limiter.limiter.hit(limit, *identifiers):
                return seconds_until(
                    limiter.limiter.get_window_stats(limit, *identifiers).reset_time
                )
    except limiter.storage.base_exceptions as error:
        current_app.logger.warning("Rate limit storage unreachable (%s): lead not counted", error)
    return None


def claim_render_token(token):
    """Record that this form's RenderToken produced a lead; False if one already did (a replay).

    The record is one atomic increment in the limiter's storage, shared by every process,
    so of several posts sending the same token at once exactly one gets True.
    """
    if not limiter.enabled:
        return True
    expiry = current_app.config["FORM_MAX_AGE_SECONDS"]
    try:
        return limiter.storage.incr(token.used_key, expiry) == 1
    except limiter.storage.base_exceptions as error:
        # A lead matters more than a replay: without the record, accept it.
        current_app.logger.warning("Used-token storage unreachable (%s): token not checked", error)
        return True


def release_render_token(token):
    """The lead could not be kept: the visitor may send the same form again."""
    if not limiter.enabled:
        return
    try:
        limiter.storage.clear(token.used_key)
    except limiter.storage.base_exceptions as error:
        current_app.logger.warning("Used-token storage unreachable (%s): token kept", error)


def lead_sent_with(form, token):
    """The lead this very form already produced (a button pressed twice), if it is stored."""
    query = (
        select(Lead)
        .where(
            Lead.created_at >= token.signed_at,
            Lead.email == form.email.data,
            Lead.name == form.name.data,
            Lead.message == form.message.data,
        )
        .order_by(Lead.id.desc())
        .limit(1)
    )
    try:
        return db.session.scalars(query).first()
    except DATABASE_UNAVAILABLE:
        db.session.rollback()
        return None
