"""Request logs, their ids, what they must never hold, and errors sent to Sentry."""

import gzip
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import brotli
import pytest
import sentry_sdk
from flask import request
from sqlalchemy import select

from app.config import ConfigurationError
from app.leads.models import Lead
from tests.conftest import CSRF_INPUT, deliver, use_mail_server

HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def json_app(capsys, make_app):
    """An app logging JSON lines; built after capsys starts, so its handler writes there."""

    def make(**overrides):
        return make_app(LOG_FORMAT="json", **overrides)

    return make


def json_lines(capsys):
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def request_lines(capsys):
    return [line for line in json_lines(capsys) if line["logger"] == "app.requests"]


def test_a_request_gets_an_id_which_the_response_returns(client):
    generated = client.get("/robots.txt").headers["X-Request-ID"]
    assert HEX_ID.fullmatch(generated)
    assert client.get("/robots.txt").headers["X-Request-ID"] != generated

    kept = client.get("/robots.txt", headers={"X-Request-ID": "edge-7f3a.9:1"})
    assert kept.headers["X-Request-ID"] == "edge-7f3a.9:1"

    for forged in ["x level=ERROR", "<script>", "a" * 129]:
        replaced = client.get("/robots.txt", headers={"X-Request-ID": forged})
        assert HEX_ID.fullmatch(replaced.headers["X-Request-ID"])


def test_each_request_is_one_json_line(json_app, capsys):
    app = json_app()
    response = app.test_client().get(
        "/robots.txt?utm_source=linkedin", headers={"X-Request-ID": "abc-123"}
    )

    [line] = request_lines(capsys)
    assert line["request_id"] == "abc-123" == response.headers["X-Request-ID"]
    assert (line["method"], line["path"], line["status"]) == ("GET", "/robots.txt", 200)
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["level"] == "INFO" and line["time"]


def test_the_logged_status_is_the_one_sent(json_app, capsys, make_post):
    app = json_app()
    client = app.test_client()
    with app.app_context():
        make_post(slug="logged")
    etag = client.get("/posts/logged").headers["ETag"]
    client.get("/posts/logged", headers={"If-None-Match": etag})
    client.get("/no-such-page")

    assert [line["status"] for line in request_lines(capsys)] == [200, 304, 404]


def test_a_new_lead_is_logged_by_its_reference(json_app, capsys, post_lead):
    app = json_app()
    response = post_lead(app.test_client())

    assert response.status_code == 303
    [line] = request_lines(capsys)
    assert (line["method"], line["path"], line["status"]) == ("POST", "/contact", 303)
    with app.app_context():
        reference = app.extensions["sqlalchemy"].session.scalars(select(Lead.reference)).one()
    assert line["lead"] == reference


def test_probes_are_logged_only_at_debug_level(json_app, capsys):
    client = json_app().test_client()
    client.get("/healthz")
    client.get("/readyz")
    assert request_lines(capsys) == []

    client = json_app(LOG_LEVEL="debug").test_client()
    client.get("/healthz")
    assert [line["level"] for line in request_lines(capsys)] == ["DEBUG"]


def test_development_logs_are_readable_text_with_the_request_id(capsys, make_app):
    client = make_app().test_client()
    request_id = client.get("/robots.txt").headers["X-Request-ID"]

    out = capsys.readouterr().out
    assert f"INFO app.requests [{request_id}] GET /robots.txt 200 " in out


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [("LOG_FORMAT", "xml", "LOG_FORMAT must be json or text"), ("LOG_LEVEL", "loud", "LOG_LEVEL")],
)
def test_log_settings_are_checked(make_app, setting, value, message):
    with pytest.raises(ConfigurationError, match=message):
        make_app(**{setting: value})


def failing_route(app):
    @app.get("/boom")
    def boom():
        raise RuntimeError("kaput")


def test_an_error_is_logged_with_its_traceback_and_the_page_quotes_its_reference(json_app, capsys):
    app = json_app(TESTING=False)
    failing_route(app)

    response = app.test_client().get("/boom")

    assert response.status_code == 500
    request_id = response.headers["X-Request-ID"]
    assert f"<code>{request_id}</code>" in response.text
    assert "recorded in our logs" in response.text
    lines = json_lines(capsys)
    [error] = [line for line in lines if line["level"] == "ERROR"]
    assert error["request_id"] == request_id
    assert "Traceback" in error["exc_info"] and "RuntimeError: kaput" in error["exc_info"]
    assert request_lines_of(lines) == [("GET", "/boom", 500)]


def request_lines_of(lines):
    return [
        (line["method"], line["path"], line["status"])
        for line in lines
        if line["logger"] == "app.requests"
    ]


# Personal data: what a visitor or a staff member typed never reaches a log line.

VISITOR = {
    "name": "Zebedee Quackenbush",
    "email": "zebedee.quackenbush@privatemail.example",
    "company": "Quackenbush Optics",
    "phone": "+44 20 7946 0999",
    "message": "Our confidential launch of the Q-Lens",
}
STAFF_EMAIL = "wilhelmina.staff@agency.test"
WRONG_PASSWORD = "hunter2-Quackenbush-secret"


def test_no_personal_data_reaches_the_logs(
    json_app, capsys, post_lead, make_user, smtp_server, refusing_smtp_port
):
    app = json_app(
        LEADS_NOTIFY_TO=["sales@agency.test"],
        LEADS_ACKNOWLEDGE=True,
        LOGIN_ACCOUNT_RATE_LIMIT="2 per minute",
        LOG_LEVEL="DEBUG",
    )
    visitor = app.test_client()
    staff = app.test_client()
    with app.app_context():
        make_user(email=STAFF_EMAIL)
        runner = app.test_cli_runner()

        assert post_lead(visitor, **VISITOR).status_code == 303
        app.config["DELIVERY_BACKOFF_SECONDS"] = 0
        use_mail_server(app, "127.0.0.1", refusing_smtp_port)
        deliver(runner)
        smtp_server.configure(app)
        deliver(runner)
    statuses = [failed_login(staff) for _ in range(3)]

    out, err = capsys.readouterr()
    logged = out + err
    assert len(smtp_server.messages) == 2
    assert statuses == [401, 401, 429]
    for typed in [*VISITOR.values(), STAFF_EMAIL, WRONG_PASSWORD, "privatemail", "Quackenbush"]:
        assert typed.lower() not in logged.lower()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    assert sum("will be retried: ConnectionRefusedError" in m for m in messages) == 2
    assert sum(m.endswith(" sent") for m in messages) == 2
    failures = [line for line in lines if line["message"] == "login failed"]
    lock_out = [line for line in lines if line["message"].startswith("login locked out")]
    assert len(failures) == 2 and len(lock_out) == 1
    accounts = {line["account"] for line in [*failures, *lock_out]}
    assert len(accounts) == 1 and re.fullmatch(r"[0-9a-f]{16}", accounts.pop())


def failed_login(client):
    token = CSRF_INPUT.search(client.get("/staff/login").text)
    data = {"email": STAFF_EMAIL, "password": WRONG_PASSWORD, "csrf_token": token.group(1)}
    return client.post("/staff/login", data=data).status_code


# Sentry: a local endpoint stands in for sentry.io. (Values the test looks for are defined
# here, away from the lines Sentry quotes as source context.)
SENT_TO_THE_ERROR = {"email": "ophelia.sentrytest@privatemail.example"}
COOKIE_VALUE = "cookie-value-ophelia"


class SentryEndpoint(BaseHTTPRequestHandler):
    envelopes: ClassVar[list[str]] = []

    def do_POST(self):  # http.server's handler hook
        body = self.rfile.read(int(self.headers["Content-Length"]))
        decode = {"gzip": gzip.decompress, "br": brotli.decompress}
        body = decode.get(self.headers.get("Content-Encoding"), bytes)(body)
        self.envelopes.append(body.decode())
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def sentry_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SentryEndpoint)
    SentryEndpoint.envelopes = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://public@127.0.0.1:{server.server_port}/1", SentryEndpoint.envelopes
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)
    server.shutdown()
    server.server_close()


def test_errors_go_to_sentry_without_what_the_visitor_sent(make_app, sentry_endpoint):
    dsn, envelopes = sentry_endpoint
    app = make_app(TESTING=False, SENTRY_DSN=dsn)

    @app.get("/boom")
    def boom():
        typed = request.args["email"]
        raise RuntimeError(f"kaput after {len(typed)} characters")

    response = app.test_client().get(
        "/boom", query_string=SENT_TO_THE_ERROR, headers={"Cookie": f"c={COOKIE_VALUE}"}
    )
    sentry_sdk.flush(timeout=5)

    assert response.status_code == 500
    sent = "\n".join(envelopes)
    assert '"type":"RuntimeError"' in sent.replace(" ", "")
    assert "kaput" in sent
    for typed in [*SENT_TO_THE_ERROR.values(), COOKIE_VALUE]:
        assert typed not in sent
