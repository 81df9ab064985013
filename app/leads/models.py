import re
import secrets
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.accounts.models import User
from app.extensions import db
from app.types import UTCDateTime, utcnow

# Crockford's base32 without look-alike letters: easy to read out over the phone.
REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# What new_reference() makes, in either letter case (staff may type one in lower case).
REFERENCE = re.compile(r"LC-[0-9A-Z]{4}-[0-9A-Z]{4}", re.IGNORECASE)

LEAD_STATUSES = ("new", "contacted", "qualified", "won", "lost", "spam")


def new_reference():
    """A short, unguessable enquiry reference such as LC-7K4M-Q9XP (40 random bits)."""
    code = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(8))
    return f"LC-{code[:4]}-{code[4:]}"


def reference_to_number(reference):
    """The 40 bits a reference spells, for a store that keeps only numbers."""
    digits = reference.upper().removeprefix("LC-").replace("-", "")
    return int("".join(f"{REFERENCE_ALPHABET.index(digit):05b}" for digit in digits), 2)


def reference_from_number(number):
    digits = "".join(REFERENCE_ALPHABET[(number >> shift) & 31] for shift in range(35, -1, -5))
    return f"LC-{digits[:4]}-{digits[4:]}"


class Lead(db.Model):
    __tablename__ = "leads"
    __table_args__ = (
        Index("ix_leads_created_at_id", "created_at", "id"),
        Index("ix_leads_status_created_at", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(16), unique=True, default=new_reference)
    status: Mapped[str] = mapped_column(String(16), default="new")
    spam_reason: Mapped[str | None] = mapped_column(String(200))

    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254))
    company: Mapped[str] = mapped_column(String(150), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    message: Mapped[str] = mapped_column(Text)

    consent_text: Mapped[str] = mapped_column(Text)
    consent_version: Mapped[str] = mapped_column(String(40))

    source_url: Mapped[str] = mapped_column(String(2000), default="")
    source_path: Mapped[str] = mapped_column(String(500), default="", index=True)
    page_referrer: Mapped[str] = mapped_column(String(2000), default="")
    utm_source: Mapped[str] = mapped_column(String(200), default="")
    utm_medium: Mapped[str] = mapped_column(String(200), default="")
    utm_campaign: Mapped[str] = mapped_column(String(200), default="")
    utm_term: Mapped[str] = mapped_column(String(200), default="")
    utm_content: Mapped[str] = mapped_column(String(200), default="")
    user_agent: Mapped[str] = mapped_column(String(500), default="")

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    messages: Mapped[list["OutboxMessage"]] = relationship(
        back_populates="lead", cascade="all, delete-orphan", order_by="OutboxMessage.id"
    )
    notes: Mapped[list["LeadNote"]] = relationship(
        back_populates="lead", cascade="all, delete-orphan", order_by="LeadNote.created_at"
    )
    activity: Mapped[list["LeadActivity"]] = relationship(
        back_populates="lead", order_by="LeadActivity.created_at", passive_deletes=True
    )
    assignee: Mapped[User | None] = relationship()

    @property
    def is_spam(self):
        return self.status == "spam"

    def __repr__(self):
        return f"<Lead {self.reference}>"


class OutboxMessage(db.Model):
    """One email to send, written in the same transaction as the lead it is about."""

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    recipient: Mapped[str] = mapped_column(String(254))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    lead: Mapped[Lead] = relationship(back_populates="messages")

    def __repr__(self):
        return f"<OutboxMessage {self.id} {self.kind} to {self.recipient}: {self.status}>"


class LeadNote(db.Model):
    __tablename__ = "lead_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    lead: Mapped[Lead] = relationship(back_populates="notes")
    author: Mapped[User | None] = relationship()


class LeadActivity(db.Model):
    """The trail: who changed what on a lead, and when. It outlives an erased lead."""

    __tablename__ = "lead_activity"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int | None] = mapped_column(
        ForeignKey("leads.id", ondelete="SET NULL"), index=True
    )
    lead_reference: Mapped[str] = mapped_column(String(16), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    lead: Mapped[Lead | None] = relationship(back_populates="activity")
    actor: Mapped[User | None] = relationship()
