"""Following a lead up: status, assignee, notes, sending a notification again, erasure, purge.

Each function that changes something records it in the lead's activity trail and commits
once. The trail holds none of the lead's personal data (no name, address or note text):
only the reference, who acted, what they did and when, so it can outlive an erased lead.
"""

from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import joinedload, selectinload

from app.accounts.models import User
from app.extensions import db
from app.leads import delivery, spool
from app.leads.models import LEAD_STATUSES, Lead, LeadActivity, LeadNote, OutboxMessage
from app.leads.notifications import queue_notifications
from app.types import utcnow

PURGE_BATCH = 500
STAFF_SPAM_REASON = "Marked as spam by staff"


class WorkflowError(ValueError):
    """The change cannot be made; the message says why."""


@dataclass(frozen=True)
class BulkResult:
    changed: int
    unchanged: int
    missing: int


def find_lead(reference):
    """The lead with this reference (any letter case) and what its page shows, or None."""
    query = (
        select(Lead)
        .where(Lead.reference == reference.upper())
        .options(
            joinedload(Lead.assignee),
            selectinload(Lead.messages),
            selectinload(Lead.notes).joinedload(LeadNote.author),
        )
    )
    return db.session.scalars(query).first()


def trail(lead):
    query = (
        select(LeadActivity)
        .where(LeadActivity.lead_id == lead.id)
        .options(joinedload(LeadActivity.actor))
        .order_by(LeadActivity.created_at, LeadActivity.id)
    )
    return db.session.scalars(query).all()


def active_staff():
    users = db.session.scalars(select(User).where(User.is_active.is_(True))).all()
    return sorted(users, key=lambda user: user.display_name.casefold())


def record(lead, actor, action, detail=""):
    db.session.add(
        LeadActivity(
            lead=lead, lead_reference=lead.reference, actor=actor, action=action, detail=detail
        )
    )


def set_status(lead, status, actor):
    """Move the lead to `status`; False if it already had it."""
    check_status(status)
    if lead.status == status:
        return False
    change_status(lead, status, actor, "status")
    db.session.commit()
    delivery.wake()
    return True


def bulk_set_status(ids, status, actor):
    """Give every lead in `ids` the status; each lead that changes gets its own trail row."""
    check_status(status)
    query = select(Lead).where(Lead.id.in_(ids)).options(selectinload(Lead.messages))
    leads = db.session.scalars(query).all()
    changed = [lead for lead in leads if lead.status != status]
    for lead in changed:
        change_status(lead, status, actor, "bulk_status")
    db.session.commit()
    delivery.wake()
    return BulkResult(
        changed=len(changed), unchanged=len(leads) - len(changed), missing=len(ids) - len(leads)
    )


def check_status(status):
    if status not in LEAD_STATUSES:
        raise WorkflowError(f"{status!r} is not a lead status.")


def change_status(lead, status, actor, action):
    record(lead, actor, action, f"{lead.status} → {status}")
    if status == "spam":
        lead.spam_reason = lead.spam_reason or STAFF_SPAM_REASON
    else:
        lead.spam_reason = None
        if lead.status == "spam":
            notify_if_never_notified(lead)
    lead.status = status


def notify_if_never_notified(lead):
    """A lead taken for spam when it arrived notified nobody: queue what it would have sent."""
    if not lead.messages:
        queue_notifications(lead)


def assign(lead, user_id, actor):
    """Give the lead to an active member of staff (None: to nobody); False if unchanged."""
    assignee = db.session.get(User, user_id) if user_id else None
    if user_id and (assignee is None or not assignee.is_active):
        raise WorkflowError("Choose an active member of staff.")
    if lead.assignee_id == (assignee.id if assignee else None):
        return False
    before = lead.assignee.display_name if lead.assignee else "nobody"
    record(lead, actor, "assigned", f"{before} → {assignee.display_name if assignee else 'nobody'}")
    lead.assignee = assignee
    db.session.commit()
    return True


def add_note(lead, body, actor):
    note = LeadNote(lead=lead, author=actor, body=body)
    db.session.add(note)
    record(lead, actor, "note")
    db.session.commit()
    return note


def message_of(lead, message_id):
    """The lead's outbox message with this id, or None (another lead's message is None too)."""
    message = db.session.get(OutboxMessage, message_id)
    return message if message is not None and message.lead_id == lead.id else None


def resend_message(lead, message, actor):
    """Queue a notification again now; refused while a worker is sending it."""
    if message.claimed_by and message.claim_expires_at and message.claim_expires_at > utcnow():
        raise WorkflowError(
            "That email is being sent right now. Reload the page in a minute to see how it went."
        )
    record(lead, actor, "resent", f"{message.kind} (message {message.id})")
    delivery.resend(message)  # commits the trail row with the message


def erase_lead(lead, actor):
    """Delete the lead, its notes and its emails, and a copy of it still kept in the spool (a
    drain that stored it but could not delete the file); the trail keeps that it was erased,
    by whom. The copy goes first: left behind, it would be stored again by the next drain."""
    if not spool.discard(lead.reference):
        raise WorkflowError(
            "A copy of this lead is kept on the server and cannot be deleted, so the lead has "
            "not been erased. Ask whoever runs the server to look at the spool folder (the log "
            "names the file), then erase the lead again."
        )
    remove_leads([(lead.id, lead.reference)], actor.id if actor else None, "erased")
    db.session.commit()


def purge_leads(cutoff, dry_run=False):
    """Remove every lead received before `cutoff`, in batches; returns how many (would) go."""
    older = Lead.created_at < cutoff
    if dry_run:
        return db.session.scalar(select(func.count()).select_from(Lead).where(older))
    total = 0
    batch_query = select(Lead.id, Lead.reference).where(older).order_by(Lead.id)
    while batch := db.session.execute(batch_query.limit(PURGE_BATCH)).all():
        remove_leads(batch, None, "purged")
        db.session.commit()
        total += len(batch)
    return total


def remove_leads(rows, actor_id, action):
    """Delete leads given as (id, reference) with their notes and emails; keep their trails.

    Explicit statements rather than ON DELETE rules: SQLite enforces those only with
    PRAGMA foreign_keys on, and the result must be the same on both databases.
    """
    ids = [lead_id for lead_id, _ in rows]
    db.session.execute(
        update(LeadActivity).where(LeadActivity.lead_id.in_(ids)).values(lead_id=None)
    )
    db.session.execute(delete(OutboxMessage).where(OutboxMessage.lead_id.in_(ids)))
    db.session.execute(delete(LeadNote).where(LeadNote.lead_id.in_(ids)))
    db.session.execute(delete(Lead).where(Lead.id.in_(ids)))
    db.session.execute(
        insert(LeadActivity),
        [
            {"lead_id": None, "lead_reference": reference, "actor_id": actor_id, "action": action}
            for _, reference in rows
        ],
    )
