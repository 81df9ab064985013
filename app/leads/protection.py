"""Defences of the public form that need no cookie: origin check, signed render time, honeypot."""

from urllib.parse import urlsplit

from flask import abort, current_app, request
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from app.types import utcnow

FORM_CONTENT_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}
SAME_SITE_FETCHES = {"same-origin", "none"}


def _signer():
    return TimestampSigner(current_app.config["SECRET_KEY"], salt="contact-form-rendered-at")


def new_render_token():
    return _signer().sign("contact").decode()


def render_token_age(token):
    """Seconds since the form was rendered, or None if the token is missing, forged or too old."""
    if not token:
        return None
    try:
        _, signed_at = _signer().unsign(
            token, max_age=current_app.config["FORM_MAX_AGE_SECONDS"], return_timestamp=True
        )
    except (SignatureExpired, BadSignature):
        return None
    return (utcnow() - signed_at).total_seconds()


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


def spam_reason(form, age_seconds):
    if form.website.data:
        return "filled the hidden honeypot field"
    if age_seconds is not None and age_seconds < current_app.config["FORM_MIN_SECONDS"]:
        return f"sent {age_seconds:.1f} s after the form was shown"
    return None
