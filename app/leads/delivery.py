"""Sending the outbox: claim due messages, send them, record the outcome, retry with backoff.

Several workers may run at once. A claim is one UPDATE over rows chosen with
SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite runs each write transaction
alone, so the same statement cannot hand one row to two workers there either. A claim
is a lease (DELIVERY_CLAIM_SECONDS): rows of a worker that died become due again when it
expires. Delivery is at least once: a worker that dies after the SMTP server accepted a
message and before recording it as sent leaves that message to be sent again, with the
same Message-ID.
"""

import logging
import os
import smtplib
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parseaddr
from functools import partial

from flask import current_app
from flask_mail import BadHeaderError
from jinja2 import TemplateError
from sqlalchemy import or_, select, update
from sqlalchemy.orm import selectinload

from app.extensions import db, mail
from app.leads import spool
from app.leads.models import OutboxMessage
from app.mail import one_line, render_message
from app.types import utcnow

log = logging.getLogger("app.delivery")

BATCH_SIZE = 20
MAX_BACKOFF = timedelta(hours=6)
# The server, Flask-Mail's header check or the email's template failed for this one
# message; the connection is fine. (A template fixed by a deploy succeeds on a retry.)
MESSAGE_ERRORS = (
    smtplib.SMTPRecipientsRefused,
    smtplib.SMTPSenderRefused,
    smtplib.SMTPDataError,
    BadHeaderError,
    TemplateError,
)
# Retrying cannot fix these: a header value with a line break stays one.
PERMANENT_ERRORS = (BadHeaderError, UnicodeError)
CONNECTION_ERRORS = (smtplib.SMTPException, OSError)


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    # References of the leads moved in from the spool by this run.
    stored: list[str] = field(default_factory=list)


def worker_name():
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim_lease():
    return timedelta(seconds=current_app.config["DELIVERY_CLAIM_SECONDS"])


def claim_due(worker, due_by, limit=BATCH_SIZE):
    """Mark up to `limit` messages due by `due_by` as this worker's; return them."""
    now = utcnow()
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == "pending",
            OutboxMessage.next_attempt_at <= due_by,
            or_(OutboxMessage.claim_expires_at.is_(None), OutboxMessage.claim_expires_at < now),
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claim = (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(due.scalar_subquery()))
        .values(claimed_by=worker, claim_expires_at=now + claim_lease())
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    )
    ids = db.session.scalars(claim).all()
    db.session.commit()
    if not ids:
        return []
    # Their leads in one query: each email and each log line names its lead.
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.id.in_(ids))
        .order_by(OutboxMessage.id)
        .options(selectinload(OutboxMessage.lead))
    )
    return db.session.scalars(query).all()


def deliver_due(worker=None):
    """Try once each message that is due when the run starts. Returns what happened.

    A message that fails waits for a later run, even with no backoff; when the server
    cannot be reached, the run stops: the messages not yet tried wait for the next one.
    """
    worker = worker or worker_name()
    report = DeliveryReport()
    # Leads kept in the spool first: their emails go in this run.
    move_kept_leads(report)
    started = utcnow()
    while messages := claim_due(worker, started):
        if not send_batch(messages, report, worker):
            break
    return report


def move_kept_leads(report):
    """Store the leads kept in the spool. Nothing wrong with the spool may stop the outbox:
    drain() copes with each file on its own, and this with the folder itself."""
    try:
        report.stored, problems = spool.drain()
    except Exception as error:
        db.session.rollback()
        log.exception("The spool cannot be read; the outbox is sent without it")
        reason = getattr(error, "strerror", None) or type(error).__name__
        problems = [f"the spool {spool.folder()} cannot be read ({reason})"]
    report.errors.extend(problems)


def send_batch(messages, report, worker):
    """Send claimed messages over one connection; False if the connection failed."""
    try:
        with mail.connect() as connection:
            for message in messages:
                if renew_claim(message, worker):
                    send_one(connection, message, report)
    except CONNECTION_ERRORS as error:
        # Refused, timed out, disconnected, login refused: every message still claimed waits.
        for message in messages:
            if message.claimed_by is not None:
                record_failure(message, error, report)
        return False
    return True


def renew_claim(message, worker):
    """Extend this worker's lease before sending; False if the lease ran out and another
    worker has taken the message (a slow server can outlast a whole batch's lease)."""
    renewed = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message.id, OutboxMessage.claimed_by == worker)
        .values(claim_expires_at=utcnow() + claim_lease())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return renewed.rowcount == 1


def send_one(connection, message, report):
    try:
        connection.send(build_email(message))
    except MESSAGE_ERRORS as error:
        record_failure(message, error, report)
        return
    except CONNECTION_ERRORS:
        raise
    except Exception as error:
        # Anything else went wrong before a byte was sent (building the message, encoding an
        # address): record it against this message so it cannot hold up the others.
        current_app.logger.exception("Could not send outbox message %s", message.id)
        record_failure(message, error, report)
        return
    message.status = "sent"
    message.sent_at = utcnow()
    message.attempts += 1
    message.last_error = None
    release(message)
    report.sent += 1
    log.info("outbox message %s sent", message.id, extra=log_fields(message))


def record_failure(message, error, report):
    config = current_app.config
    message.attempts += 1
    message.last_error = describe(error)
    if message.attempts >= config["DELIVERY_MAX_ATTEMPTS"] or isinstance(error, PERMANENT_ERRORS):
        message.status = "failed"
        report.failed += 1
    else:
        delay = timedelta(seconds=config["DELIVERY_BACKOFF_SECONDS"] * 2 ** (message.attempts - 1))
        message.next_attempt_at = utcnow() + min(delay, MAX_BACKOFF)
        report.retrying += 1
    # The full error stays on the message, for staff: its text may name the recipient.
    summary = error_summary(error)
    report.errors.append(f"message {message.id}: {summary}")
    outcome = "failed" if message.status == "failed" else "will be retried"
    log.warning(
        "outbox message %s %s: %s",
        message.id,
        outcome,
        summary,
        extra={**log_fields(message), "error": summary},
    )
    release(message)


def error_summary(error):
    """The error's class and SMTP code: never its text, which may quote an address."""
    code = getattr(error, "smtp_code", None)
    return f"{type(error).__name__} {code}" if code else type(error).__name__


def log_fields(message):
    return {
        "outbox_message": message.id,
        "kind": message.kind,
        "lead": message.lead.reference,
        "attempts": message.attempts,
    }


def release(message):
    message.claimed_by = None
    message.claim_expires_at = None
    db.session.commit()


def describe(error):
    text = str(error)
    return f"{type(error).__name__}: {text}"[:1000] if text else type(error).__name__


def build_email(outbox_message):
    lead = outbox_message.lead
    config = current_app.config
    sender = parseaddr(config["MAIL_DEFAULT_SENDER"])[1]
    email = render_message(
        outbox_message.kind, [outbox_message.recipient], lead=lead, message=outbox_message
    )
    email.sender = (config["SITE_NAME"], sender)
    domain = sender.rpartition("@")[2] or "localhost"
    email.msgId = f"<outbox-{outbox_message.id}.{lead.reference}@{domain}>"
    email.extra_headers = {"X-Lead-Reference": lead.reference}
    if outbox_message.kind == "lead_notification":
        # Form values: a line break in a header value could add a header or a recipient.
        reply_to = ascii_address(one_line(lead.email))
        if reply_to:
            email.reply_to = (one_line(lead.name), reply_to)
    else:
        email.reply_to = (config["SITE_NAME"], config["SITE_EMAIL"])
    return email


def ascii_address(address):
    """The address as plain ASCII (a Unicode domain in its IDNA form), or None when its
    local part is not ASCII: such a Reply-To needs SMTPUTF8, which Flask-Mail cannot send.
    Staff then reply to the address shown in the email."""
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        return None
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return None


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
        self.stopping = False
        self.thread = threading.Thread(target=self.run, name="outbox-delivery", daemon=True)

    def run(self):
        worker = worker_name()
        while True:
            self.event.wait(self.POLL_SECONDS)
            self.event.clear()
            if self.stopping:
                return
            with self.app.app_context():
                try:
                    deliver_due(worker)
                except Exception:
                    self.app.logger.exception("Outbox delivery failed; retrying later")
                finally:
                    db.session.remove()

    def stop(self):
        """End the thread once its current delivery run is over."""
        self.stopping = True
        self.event.set()
        self.thread.join()


_lock = threading.Lock()


def init_app(app):
    """With LEADS_DELIVER_IN_PROCESS, the first request a process serves starts its thread:
    so each serving process (a gunicorn worker, the reloader's child) runs one, and a CLI
    command, a reloader watching files or a master that only forks runs none."""
    if app.config["LEADS_DELIVER_IN_PROCESS"]:
        app.before_request(partial(start_in_process, app))


def start_in_process(app):
    """Start the app's delivery thread, unless it runs already."""
    if "outbox_deliverer" in app.extensions:
        return
    with _lock:
        if "outbox_deliverer" not in app.extensions:
            deliverer = InProcessDeliverer(app)
            app.extensions["outbox_deliverer"] = deliverer
            deliverer.thread.start()
            deliverer.event.set()


def stop_in_process(app):
    """Stop the app's delivery thread, if it has one: for code that discards apps, like tests."""
    deliverer = app.extensions.pop("outbox_deliverer", None)
    if deliverer is not None:
        deliverer.stop()


def wake():
    deliverer = current_app.extensions.get("outbox_deliverer")
    if deliverer is not None:
        deliverer.event.set()
