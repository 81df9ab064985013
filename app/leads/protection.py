"""Defences of the public form that need no cookie: origin check, signed render time,
honeypot, one lead per message, and a limit on the leads one address may send.

The form sits on pages that a cache gives every reader alike, so nothing in it belongs to
one reader: its token is a signed time that all readers of a copy share, however old the
copy. It proves the form came from our pages and dates it for the spam check; what makes a
repeated post one lead is its content. SECURITY.md, "Forms on cached pages", says why.
"""

import hashlib
import hmac
import secrets
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import abort, current_app, request
from itsdangerous import BadSignature, TimestampSigner
from limits import parse_many
from sqlalchemy import select

from app import counters
from app.database_deadline import time_limit
from app.extensions import client_network, db, limiter, shared_key
from app.leads import spool
from app.leads.models import Lead, reference_from_number, reference_to_number
from app.types import utcnow

FORM_CONTENT_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}
SAME_SITE_FETCHES = {"same-origin", "none"}
CONTACT_SCOPE = "contact"
ATTEMPTS_SCOPE = "contact-attempts"
SENT_MESSAGES_KEY = "contact-message"
# The same name, address and message sent again within this time is the same lead.
REPEAT_WINDOW = timedelta(hours=24)
# A repeat waits for the first post's lead at most that post's own time limit and this much.
REPEAT_MARGIN_SECONDS = 2
# Whether a repeat's lead was erased: asked of the database for at most this long.
REPEAT_LOOKUP_SECONDS = 1


class DatedSigner(TimestampSigner):
    """Signs with a time `seconds_ago` before now."""

    def __init__(self, *args, seconds_ago=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds_ago = seconds_ago

    def get_timestamp(self):
        return super().get_timestamp() - self.seconds_ago


def _signer(seconds_ago=0):
    return DatedSigner(
        current_app.config["SECRET_KEY"], salt="contact-form-rendered-at", seconds_ago=seconds_ago
    )


def new_render_token(seconds_ago=0):
    """The signed time a form is shown; the random part makes every render's token its own."""
    return _signer(seconds_ago).sign(secrets.token_urlsafe(16)).decode()


def token_for_a_form_typed_already():
    """A token for a form shown again with what a person typed: dated so that pressing Send
    at once is no reason to think them a bot."""
    return new_render_token(seconds_ago=current_app.config["FORM_MIN_SECONDS"])


@dataclass(frozen=True)
class RenderToken:
    """A valid form token, read once: when its form was shown."""

    signed_at: datetime

    @property
    def age_seconds(self):
        return (utcnow() - self.signed_at).total_seconds()


def read_render_token(token):
    """The RenderToken in `token`, or None if it is missing or not signed by this site. Its
    age is no reason to refuse it: a page may have been cached, or left open, for hours."""
    if not token:
        return None
    try:
        _, signed_at = _signer().unsign(token, return_timestamp=True)
    except BadSignature:
        return None
    return RenderToken(signed_at)


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
        return f"sent {age:.1f} s after the form was shown to them"
    return None


def seconds_until_allowed(setting="CONTACT_RATE_LIMIT", scope=CONTACT_SCOPE):
    """Count one post against its sender's limits in `setting` (a lead, by default); None if
    it is within every limit, else the seconds until the limit it broke lets another through."""
    if not limiter.enabled:
        return None
    limits = sorted(parse_many(current_app.config[setting]))
    return counters.first_exceeded(limits, *shared_key(client_network(), scope))


def message_key(form):
    """The form's content from this client, under a keyed hash: the store never holds what a
    visitor typed."""
    content = "\0".join((form.email.data, form.name.data, form.message.data))
    secret = current_app.config["SECRET_KEY"].encode()
    digest = hmac.new(secret, content.encode(), hashlib.sha256).hexdigest()
    return counters.key(SENT_MESSAGES_KEY, client_network(), digest)


def claim_message(form):
    """Count a post of this message; True for the first within REPEAT_WINDOW. One atomic
    increment, so of several posts of one message at once exactly one gets True."""
    if not limiter.enabled:
        return True
    return counters.storage("incr", message_key(form), window_seconds()) == 1


def record_reference(form, reference):
    """The first post's lead is stored (or kept in the spool): its repeats may show it."""
    if limiter.enabled:
        # A counter holds it, as the store keeps only counters: the reference as a number, + 1.
        # (A repeat stored because the first lead was erased replaces that one.)
        key = lead_key(message_key(form))
        counters.storage("clear", key)
        counters.storage("incr", key, window_seconds(), reference_to_number(reference) + 1)


def release_message(form):
    """The lead was not stored: the visitor may send the same message again."""
    if limiter.enabled:
        key = message_key(form)
        counters.storage("clear", key)
        counters.storage("clear", lead_key(key))


def earlier_reference(form):
    """The reference of the lead the first post of this message made. That post may still be
    storing it, for up to its own DATABASE_FORM_TIMEOUT when the database is silent: it is
    waited for that long, and a little more. None if there is no lead to show (the first post
    failed, or staff erased its lead): then the repeat is stored itself, rather than lost."""
    key = message_key(form)
    give_up_at = (
        counters.storage("get_expiry", key)
        - window_seconds()
        + current_app.config["DATABASE_FORM_TIMEOUT"]
        + REPEAT_MARGIN_SECONDS
    )
    while True:
        if recorded := counters.storage("get", lead_key(key)):
            reference = reference_from_number(recorded - 1)
            return None if lead_is_gone(reference) else reference
        if not counters.storage("get", key) or time.time() >= give_up_at:
            return None
        time.sleep(0.1)


def lead_is_gone(reference):
    """True only when the database says no lead has this reference and the spool has no
    copy; a database that cannot answer says nothing."""
    if spool.kept(reference) is not None:
        return False
    query = select(Lead.id).where(Lead.reference == reference)
    try:
        with time_limit(db.session, REPEAT_LOOKUP_SECONDS):
            return db.session.scalar(query) is None
    except Exception as error:
        current_app.logger.warning("Could not look up lead %s (%s)", reference, error)
        return False
    finally:
        with suppress(Exception):
            db.session.remove()


def lead_key(message_key):
    """Where the reference of a message's first lead is kept, beside its count of posts."""
    return f"{message_key}/lead"


def window_seconds():
    return int(REPEAT_WINDOW.total_seconds())
