"""Delivery workers killed mid-send, as real processes. The messages a dead worker claimed
go out from another once its claim ends, within about a minute at the default
DELIVERY_CLAIM_SECONDS. Delivery is at least once: a worker that dies after the SMTP server
accepted a message, before it could record the message as sent, leaves it to be sent again
with the same Message-ID, so a mail client shows the two copies as one."""

import asyncio
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.extensions import db
from app.leads.models import OutboxMessage
from app.leads.notifications import queue_notifications
from app.types import utcnow
from tests.conftest import ROOT, SMTPServer, free_port, serving
from tests.test_delivery import outbox, wait_until, worker_environment

DELIVER = [sys.executable, "-m", "flask", "--app", "app", "leads", "deliver"]
DELIVER_ONCE = [*DELIVER, "--once"]
# The promise: a dead worker's notification reaches staff within a minute and a half.
TAKEN_OVER_WITHIN_SECONDS = 90


class KillingSMTPServer(SMTPServer):
    """Accepts each message, then SIGKILLs the sender it was given before the 250 is sent:
    the message is out, and the worker never learns it."""

    victim = None

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        if self.victim is not None:
            self.victim.send_signal(signal.SIGKILL)
            self.victim = None
        return answer


@dataclass
class StallingSMTPServer(SMTPServer):
    """Never answers the end of the first message, as a server that hangs mid-send (the
    message is not accepted); accepts the ones after it."""

    stalled: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server, session, envelope):
        if not self.stalled.is_set():
            self.stalled.set()
            await asyncio.Event().wait()  # cancelled when the client's connection is lost
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def killing_smtp_server():
    with serving(KillingSMTPServer("127.0.0.1", free_port())) as server:
        yield server


@pytest.fixture
def stalling_smtp_server():
    with serving(StallingSMTPServer("127.0.0.1", free_port())) as server:
        yield server


def queue_one_notification(make_lead):
    queue_notifications(make_lead())
    db.session.commit()
    db.session.remove()


def end_claims():
    """What the end of a dead worker's lease does, without waiting for it."""
    db.session.execute(
        update(OutboxMessage).values(claim_expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()


# It waits out a real lease, about a minute: once, on the database production runs.
@pytest.mark.postgres
@pytest.mark.parametrize("database_uri", ["postgresql"], indirect=True)
def test_a_killed_workers_message_is_sent_by_another_when_the_default_claim_ends(
    app, make_lead, database_uri, stalling_smtp_server
):
    queue_one_notification(make_lead)
    environment = worker_environment(database_uri, stalling_smtp_server)

    first = subprocess.Popen(DELIVER_ONCE, cwd=ROOT, env=environment)
    assert stalling_smtp_server.stalled.wait(timeout=30), "the first worker never sent"
    first.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    assert first.wait(timeout=10) == -signal.SIGKILL
    (message,) = outbox()
    assert (message.status, message.attempts) == ("pending", 0)
    assert message.claimed_by, "the dead worker's claim still holds the message"

    with subprocess.Popen(
        DELIVER, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as second:
        try:
            deadline = TAKEN_OVER_WITHIN_SECONDS - (time.monotonic() - killed)
            sent = wait_until(lambda: outbox()[0].status == "sent", timeout=deadline)
        finally:
            second.kill()
        output = second.stdout.read().decode()

    assert sent, f"not sent {TAKEN_OVER_WITHIN_SECONDS} s after the kill:\n{output}"
    assert len(stalling_smtp_server.messages) == 1
    assert outbox()[0].attempts == 1


def test_a_message_sent_again_after_a_crash_keeps_its_message_id(
    app, make_lead, database_uri, killing_smtp_server
):
    queue_one_notification(make_lead)
    environment = worker_environment(database_uri, killing_smtp_server)

    first = subprocess.Popen(DELIVER_ONCE, cwd=ROOT, env=environment)
    killing_smtp_server.victim = first
    assert first.wait(timeout=60) == -signal.SIGKILL
    (message,) = outbox()
    assert message.status == "pending"
    assert message.claimed_by, "the dead worker's claim still holds the message"

    end_claims()
    second = subprocess.run(
        DELIVER_ONCE, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 0, second.stderr
    assert "1 sent" in second.stdout

    copies = [received.message for received in killing_smtp_server.messages]
    assert len(copies) == 2
    assert copies[0]["Message-ID"] == copies[1]["Message-ID"]
    assert copies[0]["Message-ID"].startswith(f"<outbox-{message.id}.")
    (message,) = outbox()
    assert (message.status, message.attempts) == ("sent", 1)
