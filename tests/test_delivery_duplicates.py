"""Delivery is at least once: a worker that dies after the SMTP server accepted a message,
before it could record the message as sent, leaves it to be sent again with the same
Message-ID, so a mail client shows the two copies as one."""

import signal
import subprocess
import sys
import time

import pytest

from app.extensions import db
from app.leads.notifications import queue_notifications
from tests.conftest import ROOT, SMTPServer, free_port, serving
from tests.test_delivery import outbox, worker_environment

DELIVER_ONCE = [sys.executable, "-m", "flask", "--app", "app", "leads", "deliver", "--once"]
CLAIM_SECONDS = 1


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


@pytest.fixture
def killing_smtp_server():
    with serving(KillingSMTPServer("127.0.0.1", free_port())) as server:
        yield server


def test_a_message_sent_again_after_a_crash_keeps_its_message_id(
    app, make_lead, database_uri, killing_smtp_server
):
    queue_notifications(make_lead())
    db.session.commit()
    db.session.remove()
    environment = worker_environment(
        database_uri, killing_smtp_server, DELIVERY_CLAIM_SECONDS=str(CLAIM_SECONDS)
    )

    first = subprocess.Popen(DELIVER_ONCE, cwd=ROOT, env=environment)
    killing_smtp_server.victim = first
    assert first.wait(timeout=60) == -signal.SIGKILL
    (message,) = outbox()
    assert message.status == "pending"
    assert message.claimed_by, "the dead worker's claim still holds the message"
    db.session.remove()

    time.sleep(CLAIM_SECONDS + 0.5)
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
