"""Accepting a lead: stored with its attribution and its notifications in one transaction."""

from urllib.parse import parse_qs, urlsplit

from flask import current_app, request
from sqlalchemy import select

from app.database_deadline import time_limit
from app.extensions import cause_of, db
from app.leads import delivery, spool
from app.leads.forms import CONSENT_VERSION, consent_text
from app.leads.models import REFERENCE, Lead, new_reference
from app.leads.notifications import queue_notifications
from app.leads.protection import allowed_origins, origin_of
from app.types import utcnow
from app.validation import CONTROL_CHARACTERS

UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


def submit_lead(form, spam_reason=None):
    """Store the lead and its outbox rows, commit, then nudge delivery. Returns the lead's
    reference, taken before the commit: thanking the visitor needs no database after it.

    If the commit fails for any reason (the database unreachable, silent past
    DATABASE_FORM_TIMEOUT, read-only during a failover, behind the code's migrations, or a
    driver error nobody foresaw), the lead is kept in the spool instead, to be stored (with
    its notifications) by the delivery worker once the database takes it. The form is valid
    by now: no failure of ours may lose it.
    """
    lead = Lead(
        reference=new_reference(),
        created_at=utcnow(),
        name=form.name.data,
        email=form.email.data,
        company=form.company.data or "",
        phone=form.phone.data or "",
        message=form.message.data,
        consent_text=consent_text(),
        consent_version=CONSENT_VERSION,
        user_agent=clean(request.user_agent.string, 500),
        status="spam" if spam_reason else "new",
        spam_reason=spam_reason,
        **attribution(form.source_page.data, form.page_referrer.data),
    )
    reference = lead.reference
    try:
        with time_limit(db.session, current_app.config["DATABASE_FORM_TIMEOUT"]):
            db.session.add(lead)
            if not lead.is_spam:
                queue_notifications(lead)
            db.session.commit()
    except Exception as error:
        discard_session()
        keep_in_spool(lead, reason=type(cause_of(error)).__name__)
        return reference
    delivery.wake()
    return reference


def discard_session():
    """Drop the failed transaction; a connection too broken even to roll back is dropped too."""
    try:
        db.session.remove()
    except Exception:
        current_app.logger.exception("Could not close the database session after a failed commit")


class LeadNotSaved(RuntimeError):
    """Neither the database nor the spool could take the lead: the visitor must be told."""


def keep_in_spool(lead, reason):
    try:
        spool.keep(lead)
    except Exception as error:
        current_app.logger.critical(
            "Database did not take lead %s (%s) and the spool cannot keep it (%s): not saved",
            lead.reference,
            reason,
            getattr(error, "strerror", None) or type(error).__name__,
        )
        raise LeadNotSaved from error
    current_app.logger.warning(
        "Database did not take lead %s (%s); kept in the spool", lead.reference, reason
    )


def lead_by_reference(reference):
    """The lead with exactly this reference, kept in the spool or stored, or None (also for
    text that is no reference). The spool is looked at first: it needs no database."""
    if not REFERENCE.fullmatch(reference):
        return None
    return (
        spool.kept(reference)
        or db.session.scalars(select(Lead).where(Lead.reference == reference)).first()
    )


def attribution(source_page, page_referrer):
    """Where the form was sent from, what brought the reader there, and its UTM tags.

    The page's own script reports its address and document.referrer; without JavaScript
    the POST's Referer header still names the page (same-origin requests send it whole).
    """
    source = next((url for url in (source_page, request.referrer) if is_own_page(url)), "")
    query = parse_qs(urlsplit(source).query)
    utm = {name: clean(query.get(name, [""])[0], 200) for name in UTM_FIELDS}
    return {
        "source_url": clean(source, 2000),
        "source_path": clean(urlsplit(source).path, 500),
        "page_referrer": clean(page_referrer, 2000),
        **utm,
    }


def is_own_page(url):
    try:
        return bool(url) and origin_of(url) in allowed_origins()
    except ValueError:  # not an address at all, such as "http://["
        return False


def clean(value, limit):
    """What fits in the column, without control characters (PostgreSQL refuses NUL in text)."""
    return CONTROL_CHARACTERS.sub("", value or "")[:limit]
