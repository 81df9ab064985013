"""Sending the outbox: claim due messages, send them, record the outcome, retry with backoff.

Several workers may run at once. A claim is one UPDATE over rows chosen with
SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite runs each write transaction
alone, so the same statement cannot hand one row to two workers there either. A claim
is a lease: rows of a worker that died become due again when it expires.
"""

import os
import smtplib
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import formataddr

from flask import current_app
from flask_mail import BadHeaderError
from sqlalchemy import or_, select, update

from app.extensions import db, mail
from app.leads.models import OutboxMessage
from app.mail import render_message
from app.types import utcnow

BATCH_SIZE = 20
CLAIM_LEASE = timedelta(minutes=10)
MAX_BACKOFF = timedelta(hours=6)
SEND_ERRORS = (smtplib.SMTPException, OSError, BadHeaderError)


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other):
        self.sent += other.sent
        self.retrying += other.retrying
        self.failed += other.failed
        self.errors += other.errors


def worker_name():
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim_due(worker, limit=BATCH_SIZE):
    """Mark up to `limit` due messages as this worker's; return them."""
    now = utcnow()
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == "pending",
            OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.claim_expires_at.is_(None), OutboxMessage.claim_expires_at < now),
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claim = (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(due.scalar_subquery()))
        .values(claimed_by=worker, claim_expires_at=now + CLAIM_LEASE)
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    )
    ids = db.session.scalars(claim).all()
    db.session.commit()
    if not ids:
        return []
    query = select(OutboxMessage).where(OutboxMessage.id.in_(ids)).order_by(OutboxMessage.id)
    return db.session.scalars(query).all()


def deliver_batch(worker):
    report = DeliveryReport()
    messages = claim_due(worker)
    if not messages:
        return report
    try:
        with mail.connect() as connection:
            for message in messages:
                send_one(connection, message, report)
    except SEND_ERRORS as error:
        # The connection itself failed (refused, timed out, login): every unsent message waits.
        for message in messages:
            if message.status == "pending" and message.claimed_by == worker:
                record_failure(message, error, report)
    return report


def deliver_due(worker=None):
    """Send everything that is due now, batch after batch. Returns what happened."""
    worker = worker or worker_name()
    total = DeliveryReport()
    while True:
        report = deliver_batch(worker)
        total.add(report)
        if not (report.sent or report.retrying or report.failed):
            return total


def send_one(connection, message, report):
    try:
        connection.send(build_email(message))
    except SEND_ERRORS as error:
        if isinstance(error, smtplib.SMTPServerDisconnected):
            raise
        record_failure(message, error, report)
        return
    message.status = "sent"
    message.sent_at = utcnow()
    message.attempts += 1
    message.last_error = None
    release(message)
    report.sent += 1


def record_failure(message, error, report):
    config = current_app.config
    message.attempts += 1
    message.last_error = describe(error)
    if message.attempts >= config["DELIVERY_MAX_ATTEMPTS"]:
        message.status = "failed"
        report.failed += 1
    else:
        delay = timedelta(seconds=config["DELIVERY_BACKOFF_SECONDS"] * 2 ** (message.attempts - 1))
        message.next_attempt_at = utcnow() + min(delay, MAX_BACKOFF)
        report.retrying += 1
    report.errors.append(f"message {message.id} to {message.recipient}: {message.last_error}")
    release(message)


def release(message):
    message.claimed_by = None
    message.claim_expires_at = None
    db.session.commit()


def describe(error):
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:1000]


def build_email(outbox_message):
    lead = outbox_message.lead
    config = current_app.config
    email = render_message(
        outbox_message.kind, [outbox_message.recipient], lead=lead, message=outbox_message
    )
    email.sender = formataddr((config["SITE_NAME"], config["MAIL_DEFAULT_SENDER"]))
    domain = config["MAIL_DEFAULT_SENDER"].rpartition("@")[2] or "localhost"
    email.msgId = f"<outbox-{outbox_message.id}.{lead.reference}@{domain}>"
    email.extra_headers = {"X-Lead-Reference": lead.reference}
    if outbox_message.kind == "lead_notification":
        email.reply_to = formataddr((lead.name, lead.email))
    return email


def resend(message):
    """Queue a message again now (a staff member's "send again")."""
    message.status = "pending"
    message.next_attempt_at = utcnow()
    release(message)
    wake()


class InProcessDeliverer:
    """A daemon thread that sends the outbox inside the web process: for a one-machine setup."""

    POLL_SECONDS = 30

    def __init__(self, app):
        self.app = app
        self.event = threading.Event()
        self.thread = threading.Thread(target=self.run, name="outbox-delivery", daemon=True)

    def run(self):
        worker = worker_name()
        while True:
            self.event.wait(self.POLL_SECONDS)
            self.event.clear()
            with self.app.app_context():
                try:
                    deliver_due(worker)
                except Exception:
                    self.app.logger.exception("Outbox delivery failed; retrying later")
                finally:
                    db.session.remove()


_lock = threading.Lock()


def start_in_process(app):
    if not app.config["LEADS_DELIVER_IN_PROCESS"]:
        return
    with _lock:
        if "outbox_deliverer" not in app.extensions:
            deliverer = InProcessDeliverer(app)
            app.extensions["outbox_deliverer"] = deliverer
            deliverer.thread.start()
            deliverer.event.set()


def wake():
    deliverer = current_app.extensions.get("outbox_deliverer")
    if deliverer is not None:
        deliverer.event.set()
