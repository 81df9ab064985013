"""Lead notifications through the outbox, against real SMTP servers on loopback."""

import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from datetime import timedelta

import pytest
from jinja2 import ChoiceLoader, DictLoader
from markupsafe import escape
from sqlalchemy import select, update

from app import dates
from app.extensions import db
from app.leads import delivery
from app.leads.models import Lead, OutboxMessage
from app.leads.notifications import queue_notifications
from app.types import utcnow
from tests.conftest import ROOT, SITE_URL, deliver, use_mail_server

STAFF = ["sales@agency.test", "partners@agency.test"]
SENDER = "website@agency.test"
INJECTION = "\r\nBcc: evil@attacker.example\r\nX-Injected: yes"
HEADERS = {
    "Content-Type",
    "MIME-Version",
    "Subject",
    "From",
    "To",
    "Date",
    "Message-ID",
    "Reply-To",
    "X-Lead-Reference",
}


@pytest.fixture
def app_config(app_config):
    return {
        **app_config,
        "LEADS_NOTIFY_TO": STAFF,
        "LEADS_ACKNOWLEDGE": True,
        "MAIL_DEFAULT_SENDER": SENDER,
        "MAIL_TIMEOUT": 2,
    }


def outbox():
    db.session.rollback()  # read what other sessions, threads and processes committed
    return db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()


def make_due():
    db.session.execute(
        update(OutboxMessage).values(next_attempt_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def queue_for(lead):
    queue_notifications(lead)
    db.session.commit()
    return lead


def by_recipient(server):
    return {received.rcpt_tos[0]: received.message for received in server.messages}


def sent_once(server, count):
    ids = Counter(received.message["Message-ID"] for received in server.messages)
    return len(ids) == count and set(ids.values()) == {1}


def address(header):
    (only,) = header.addresses
    return only.display_name, only.addr_spec


def parts(message):
    return (
        message.get_body(("plain",)).get_content(),
        message.get_body(("html",)).get_content(),
    )


def test_a_lead_is_stored_then_mailed_to_staff_and_the_visitor(
    app, client, runner, post_lead, smtp_server
):
    smtp_server.configure(app)
    page = f"{SITE_URL}/posts/x?utm_source=linkedin&utm_medium=social&utm_campaign=launch"
    fields = {
        "name": "Ada Lovelace",
        "email": "ada@example.org",
        "company": "<script>alert(1)</script> & Sons",
        "phone": "+44 20 7946 0000",
        "message": "Hello <b>team</b>,\r\nwe need a <script>alert(2)</script> campaign.",
        "page_referrer": "https://www.linkedin.com/feed/",
    }

    response = post_lead(client, page=page, **fields)

    assert response.status_code == 303
    reference = db.session.scalars(select(Lead.reference)).one()
    assert response.location.endswith(f"/contact/thanks/{reference}")
    assert sorted((m.kind, m.recipient) for m in outbox()) == sorted(
        [*(("lead_notification", to) for to in STAFF), ("lead_acknowledgment", "ada@example.org")]
    )

    assert "3 sent" in deliver(runner).output

    assert sorted(received.rcpt_tos for received in smtp_server.messages) == sorted(
        [[STAFF[0]], [STAFF[1]], ["ada@example.org"]]
    )
    assert sent_once(smtp_server, 3)
    staff_link = f"{SITE_URL}/staff/leads/{reference}"
    received = dates.stamp(db.session.scalars(select(Lead.created_at)).one())
    values = [*fields.values(), page, "linkedin", "social", "launch", staff_link]
    for recipient, message in by_recipient(smtp_server).items():
        assert set(message.keys()) <= HEADERS
        assert address(message["From"]) == ("Test Agency", SENDER)
        assert address(message["To"])[1] == recipient
        assert message["X-Lead-Reference"] == reference
        text, html = parts(message)
        assert "<script>" not in html
        if recipient in STAFF:
            assert address(message["Reply-To"]) == ("Ada Lovelace", "ada@example.org")
            assert "Ada Lovelace" in message["Subject"]
            assert fields["company"] in message["Subject"]
            for value in values:
                for line in value.splitlines():
                    assert line in text
                    assert escape(line) in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Sons" in html
            assert f'href="{staff_link}"' in html
            assert f"Received:  {received}" in text
            assert f"<td>{received}</td>" in html
        else:
            # The visitor's reply reaches the agency's public address, not a no-reply sender.
            assert address(message["Reply-To"]) == ("Test Agency", "hello@example.com")
            assert reference in message["Subject"]
            for line in fields["message"].splitlines():
                assert line in text
                assert escape(line) in html

    deliver(runner)
    assert len(smtp_server.messages) == 3
    for message in outbox():
        assert (message.status, message.attempts, message.last_error) == ("sent", 1, None)
        assert message.sent_at is not None


def test_unusual_characters_arrive_intact(app, client, runner, post_lead, smtp_server):
    smtp_server.configure(app)
    name, company = "Zoë Ñúñez 山田 🚀", "שלום Labs"
    message = "A long paragraph with no line break at all. " * 100

    assert post_lead(client, name=name, company=company, message=message).status_code == 303
    deliver(runner)

    notification = by_recipient(smtp_server)[STAFF[0]]
    assert name in notification["Subject"]
    assert company in notification["Subject"]
    assert address(notification["Reply-To"]) == (name, "ada@example.org")
    text, html = parts(notification)
    assert message.strip() in text
    assert message.strip() in html
    assert all(m.status == "sent" for m in outbox())


def test_commas_colons_and_at_signs_in_long_names_add_no_address(
    app, client, runner, post_lead, smtp_server
):
    app.config["SITE_NAME"] = "Catalyst, Science and Technology Marketing: Communications Ltd"
    smtp_server.configure(app)
    name = "Lovelace, Ada (Head of Marketing): please reply to ada@attacker.example"

    assert post_lead(client, name=name).status_code == 303
    deliver(runner)

    for received in smtp_server.messages:
        assert [a.addr_spec for a in received.message["From"].addresses] == [SENDER]
    notification = by_recipient(smtp_server)[STAFF[0]]
    assert [a.addr_spec for a in notification["Reply-To"].addresses] == ["ada@example.org"]


@pytest.mark.parametrize("field", ["name", "email", "company"])
def test_the_form_refuses_line_breaks_in_header_like_fields(app, client, post_lead, field):
    value = {"name": "Eve", "email": "eve@example.org", "company": "Acme"}[field] + INJECTION

    response = post_lead(client, **{field: value})

    assert response.status_code == 422
    assert db.session.scalars(select(Lead)).all() == []


def test_stored_line_breaks_add_no_header_and_no_recipient(app, runner, make_lead, smtp_server):
    smtp_server.configure(app)
    email = queue_for(make_lead(name="Eve" + INJECTION, company="Acme" + INJECTION)).email

    deliver(runner)

    assert len(smtp_server.messages) == 3
    for received in smtp_server.messages:
        assert received.rcpt_tos in ([STAFF[0]], [STAFF[1]], [email])
        assert set(received.message.keys()) <= HEADERS
        assert received.message["Bcc"] is None
        assert received.message["X-Injected"] is None
    notification = by_recipient(smtp_server)[STAFF[0]]
    one_line = "Eve Bcc: evil@attacker.example X-Injected: yes"
    assert notification["Subject"].startswith(f"New enquiry: {one_line} (Acme Bcc:")
    assert address(notification["Reply-To"]) == (one_line, email)
    assert all(m.status == "sent" for m in outbox())


def test_a_recipient_with_a_line_break_fails_at_once_and_staff_still_hear(
    app, runner, make_lead, smtp_server
):
    smtp_server.configure(app)
    queue_for(make_lead(email="eve@example.org" + INJECTION))

    result = deliver(runner)

    assert sorted(received.rcpt_tos for received in smtp_server.messages) == [
        [STAFF[1]],
        [STAFF[0]],
    ]
    for received in smtp_server.messages:
        assert received.message["Bcc"] is None
        assert received.message["X-Injected"] is None
    acknowledgment = next(m for m in outbox() if m.kind == "lead_acknowledgment")
    assert (acknowledgment.status, acknowledgment.attempts) == ("failed", 1)
    assert acknowledgment.last_error.startswith("BadHeaderError")
    assert "1 failed" in result.output

    deliver(runner)
    assert len(smtp_server.messages) == 2


def test_refused_connections_leave_the_lead_and_retry_later(
    app, client, runner, post_lead, refusing_smtp_port, smtp_server
):
    use_mail_server(app, "127.0.0.1", refusing_smtp_port)

    assert post_lead(client).status_code == 303
    assert db.session.scalars(select(Lead)).one().name == "Ada Lovelace"
    assert "3 to retry" in deliver(runner).output

    messages = outbox()
    assert len(messages) == 3
    for message in messages:
        assert (message.status, message.attempts, message.sent_at) == ("pending", 1, None)
        assert "Connection refused" in message.last_error
        assert message.next_attempt_at > utcnow()

    smtp_server.configure(app)
    deliver(runner)
    assert smtp_server.messages == []  # not due yet: the backoff holds

    make_due()
    deliver(runner)
    assert sent_once(smtp_server, 3)
    assert [(m.status, m.attempts) for m in outbox()] == [("sent", 2)] * 3

    deliver(runner)
    assert len(smtp_server.messages) == 3


def test_a_silent_server_times_out_instead_of_hanging(
    app, client, runner, post_lead, silent_smtp_server, smtp_server
):
    app.config["MAIL_TIMEOUT"] = 1
    silent_smtp_server.configure(app)
    assert post_lead(client).status_code == 303

    started = time.monotonic()
    deliver(runner)
    assert time.monotonic() - started < 5

    messages = outbox()
    for message in messages:
        assert (message.status, message.attempts) == ("pending", 1)
        assert "timed out" in message.last_error

    smtp_server.configure(app)
    make_due()
    deliver(runner)
    deliver(runner)
    assert sent_once(smtp_server, 3)
    assert [(m.status, m.attempts) for m in outbox()] == [("sent", 2)] * 3


def test_retries_end_after_the_limit(app, runner, make_lead, refusing_smtp_port, smtp_server):
    app.config.update(DELIVERY_MAX_ATTEMPTS=3, DELIVERY_BACKOFF_SECONDS=0)
    use_mail_server(app, "127.0.0.1", refusing_smtp_port)
    queue_for(make_lead())

    for attempt in (1, 2):
        assert "3 to retry" in deliver(runner).output
        assert [(m.status, m.attempts) for m in outbox()] == [("pending", attempt)] * 3
    assert "3 failed" in deliver(runner).output
    assert [(m.status, m.attempts) for m in outbox()] == [("failed", 3)] * 3

    smtp_server.configure(app)
    assert deliver(runner).output == ""
    assert smtp_server.messages == []
    assert [(m.status, m.attempts) for m in outbox()] == [("failed", 3)] * 3


@pytest.fixture
def in_process_app(make_app):
    """An app that sends its outbox from a thread of its own (LEADS_DELIVER_IN_PROCESS)."""
    app = make_app(LEADS_DELIVER_IN_PROCESS=True)
    with app.app_context():
        yield app


def delivery_threads():
    return [thread for thread in threading.enumerate() if thread.name == "outbox-delivery"]


def test_in_process_delivery_runs_after_the_response(in_process_app, post_lead, silent_smtp_server):
    silent_smtp_server.configure(in_process_app)

    assert post_lead(in_process_app.test_client()).status_code == 303
    # The thread is still waiting for the server's greeting: nothing is recorded yet.
    assert [(m.status, m.attempts) for m in outbox()] == [("pending", 0)] * 3

    assert wait_until(lambda: all(m.attempts == 1 for m in outbox()))
    assert all("timed out" in m.last_error for m in outbox())


def test_in_process_delivery_needs_no_worker(in_process_app, post_lead, smtp_server):
    smtp_server.configure(in_process_app)

    assert post_lead(in_process_app.test_client()).status_code == 303

    assert len(smtp_server.wait_for(3)) == 3
    assert wait_until(lambda: all(m.status == "sent" for m in outbox()))
    assert sent_once(smtp_server, 3)


def test_a_serving_app_starts_one_delivery_thread_with_its_first_request(in_process_app):
    client = in_process_app.test_client()
    assert delivery_threads() == []

    client.get("/robots.txt")
    client.get("/robots.txt")

    threads = delivery_threads()
    assert threads == [in_process_app.extensions["outbox_deliverer"].thread]
    assert threads[0].is_alive()


def test_cli_commands_start_no_delivery_thread(in_process_app):
    runner = in_process_app.test_cli_runner()
    for command in (["leads", "deliver", "--once"], ["staff", "list"]):
        assert runner.invoke(args=command).exit_code == 0
    assert delivery_threads() == []
    assert "outbox_deliverer" not in in_process_app.extensions


def test_no_delivery_thread_when_the_setting_is_off(make_app):
    app = make_app(LEADS_DELIVER_IN_PROCESS=False)
    app.test_client().get("/robots.txt")
    assert delivery_threads() == []
    assert "outbox_deliverer" not in app.extensions


def worker_environment(database_uri, smtp_server, **settings):
    """The environment of a `flask leads deliver` process sending to smtp_server."""
    return {
        **os.environ,
        "FLASK_SKIP_DOTENV": "1",
        "APP_ENV": "development",
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": database_uri,
        "SITE_URL": SITE_URL,
        "MAIL_SERVER": smtp_server.host,
        "MAIL_PORT": str(smtp_server.port),
        "MAIL_USE_TLS": "false",
        "MAIL_USE_SSL": "false",
        "MAIL_DEFAULT_SENDER": SENDER,
        "MAIL_TIMEOUT": "5",
        **settings,
    }


def run_two_workers(make_lead, database_uri, smtp_server, leads=100):
    for _ in range(leads):
        queue_notifications(make_lead())
    db.session.commit()
    expected = {message.id for message in outbox()}
    db.session.remove()
    environment = worker_environment(database_uri, smtp_server)
    command = [sys.executable, "-m", "flask", "--app", "app", "leads", "deliver", "--once"]
    with ExitStack() as stack:
        workers = [
            stack.enter_context(
                subprocess.Popen(
                    command, cwd=ROOT, env=environment, text=True, stdout=subprocess.PIPE
                )
            )
            for _ in range(2)
        ]
        try:
            outputs = [worker.communicate(timeout=60)[0] for worker in workers]
        except subprocess.TimeoutExpired:
            for worker in workers:
                worker.kill()
            raise
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    sent = [int(re.search(r"(\d+) sent, ", output or "0 sent, ")[1]) for output in outputs]
    assert sum(sent) == len(expected) == leads * 3, sent

    assert sent_once(smtp_server, len(expected))
    ids = {received.message["Message-ID"] for received in smtp_server.messages}
    assert {int(re.match(r"<outbox-(\d+)\.", id_)[1]) for id_ in ids} == expected
    assert {(m.status, m.attempts) for m in outbox()} == {("sent", 1)}


@pytest.mark.postgres
@pytest.mark.parametrize("database_uri", ["postgresql"], indirect=True)
def test_two_workers_send_each_message_once_on_postgresql(
    app, make_lead, database_uri, smtp_server
):
    run_two_workers(make_lead, database_uri, smtp_server)


@pytest.mark.parametrize("database_uri", ["sqlite"], indirect=True)
def test_two_workers_send_each_message_once_on_sqlite(app, make_lead, database_uri, smtp_server):
    run_two_workers(make_lead, database_uri, smtp_server, leads=40)


def test_without_a_mail_server_messages_are_printed(app, runner, make_lead):
    lead = queue_for(make_lead())
    subject = f"Subject: New enquiry: {lead.name} ({lead.company}) [{lead.reference}]"
    recipients = [*STAFF, lead.email]
    name_line = f"Name:      {lead.name}"

    output = deliver(runner).stdout

    assert output.count("-" * 72) == 6
    assert subject in output
    assert name_line in output  # the text body, readable as typed
    for recipient in recipients:
        assert f"To: {recipient}" in output
    assert "3 sent" in output
    assert [(m.status, m.attempts) for m in outbox()] == [("sent", 1)] * 3


def test_a_broken_email_template_is_recorded_against_the_message(
    app, runner, make_lead, smtp_server
):
    queue_for(make_lead())
    smtp_server.configure(app)
    broken = {"email/lead_notification/subject.txt": "{{ lead.no_such_field.upper() }}"}
    app.jinja_env.loader = ChoiceLoader([DictLoader(broken), app.jinja_env.loader])

    deliver(runner)

    notifications = [m for m in outbox() if m.kind == "lead_notification"]
    assert notifications and all(m.status == "pending" and m.attempts == 1 for m in notifications)
    assert all(m.last_error.startswith("UndefinedError") for m in notifications)
    assert all(m.claimed_by is None for m in notifications)
    assert [m.kind for m in outbox() if m.status == "sent"] == ["lead_acknowledgment"]


def test_a_non_ascii_address_never_holds_up_the_outbox(app, runner, make_lead, smtp_server):
    smtp_server.configure(app)
    queue_for(make_lead(name="José", email="josé@example.org"))
    queue_for(make_lead(name="Ana", email="ana@exämple.org"))

    result = deliver(runner)

    notifications = [r.message for r in smtp_server.messages if r.rcpt_tos[0] in STAFF]
    assert len(notifications) == 4  # both leads reach both staff addresses
    jose, ana = ([m for m in notifications if name in m["Subject"]] for name in ("José", "Ana"))
    assert [m["Reply-To"] for m in jose] == [None, None]  # staff reply to the address shown
    assert {address(m["Reply-To"]) for m in ana} == {("Ana", "ana@xn--exmple-cua.org")}
    jose_ack = next(m for m in outbox() if m.recipient == "josé@example.org")
    assert (jose_ack.status, jose_ack.attempts) == ("failed", 1)
    assert jose_ack.last_error.startswith("UnicodeEncodeError")
    assert all(m.claimed_by is None for m in outbox())
    assert "1 failed" in result.output


def test_a_message_whose_lease_another_worker_took_is_not_sent(app, make_lead, smtp_server):
    smtp_server.configure(app)
    queue_for(make_lead())
    claimed = delivery.claim_due("worker-a", utcnow())
    stolen = claimed[0]
    db.session.execute(
        update(OutboxMessage).where(OutboxMessage.id == stolen.id).values(claimed_by="worker-b")
    )
    db.session.commit()

    report = delivery.DeliveryReport()
    assert delivery.send_batch(claimed, report, "worker-a")

    assert report.sent == len(claimed) - 1
    sent_ids = {received.message["Message-ID"] for received in smtp_server.messages}
    assert not any(f"outbox-{stolen.id}." in message_id for message_id in sent_ids)
    assert (stolen.status, stolen.claimed_by) == ("pending", "worker-b")


@pytest.mark.parametrize(("claim_seconds", "sent"), [(600, 0), (0, 3)])
def test_a_dead_workers_messages_are_taken_over_when_its_claim_ends(
    app, runner, make_lead, smtp_server, claim_seconds, sent
):
    smtp_server.configure(app)
    queue_for(make_lead())
    app.config["DELIVERY_CLAIM_SECONDS"] = claim_seconds
    delivery.claim_due("worker-that-died", utcnow())  # and never sends them

    deliver(runner)

    assert len(smtp_server.messages) == sent
