"""Limits of the "Let's connect" form that are fair to people: only messages that would be
stored count, a refusal keeps what was typed, and a form's token sends one lead only."""

import re
import shutil
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import html5lib
import pytest
import sqlalchemy as sa

from app.extensions import db
from app.leads import protection
from app.leads.models import Lead
from app.leads.protection import read_render_token
from tests.conftest import LEAD_FIELDS, SITE_URL, render_token
from tests.stack import Stack, fetch, stack_environment
from tests.test_database_failures import unreachable_database
from tests.test_serve import NGINX

REDIS_URL = "redis://127.0.0.1:6379/13"
ALREADY_SENT = "This form has already been used to send a message"
RENDER_TOKEN = re.compile(r'name="contact-rendered_at" type="hidden" value="([^"]+)"')


def send(client, token, **fields):
    data = {f"contact-{name}": value for name, value in {**LEAD_FIELDS, **fields}.items()}
    data |= {"contact-consent": "y", "contact-rendered_at": token}
    return client.post("/contact", data=data, headers={"Origin": SITE_URL})


def value_of(response, name):
    tree = html5lib.parse(response.text, namespaceHTMLElements=False)
    element = tree.find(f".//*[@name='contact-{name}']")
    return element.text if element.tag == "textarea" else element.get("value")


def stored_leads():
    return db.session.scalars(sa.select(Lead).order_by(Lead.id)).all()


@pytest.fixture
def limited_client(make_app):
    """A client on an address of its own, against an app whose limit is given by the test."""

    def make(limit):
        app = make_app(RATELIMIT_ENABLED=True, CONTACT_RATE_LIMIT=limit)
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"2001:db8:{uuid.uuid4().hex[:4]}::1"
        return app, client

    return make


# The rate limit counts messages that would be stored, not mistakes


def test_fixing_mistakes_costs_nothing_and_the_limit_keeps_what_was_typed(limited_client):
    app, client = limited_client("2 per minute")
    token = render_token(app)

    mistakes = [send(client, token, email="not an address").status_code for _ in range(3)]
    accepted = [send(client, render_token(app)).status_code for _ in range(2)]
    message = "Third message: the launch date moved to June."
    refused = send(client, token, message=message)

    assert (mistakes, accepted, refused.status_code) == ([422] * 3, [303] * 2, 429)
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.cache_control.no_store
    assert "please wait 1 minute and send it again" in refused.text
    assert value_of(refused, "message") == message
    assert value_of(refused, "email") == LEAD_FIELDS["email"]
    assert value_of(refused, "rendered_at") == token  # the same form can be sent later
    with app.app_context():
        assert len(stored_leads()) == 2


def test_a_flood_of_broken_posts_is_limited_and_keeps_what_was_typed(make_app):
    app = make_app(RATELIMIT_ENABLED=True, CONTACT_ATTEMPT_RATE_LIMIT="3 per minute")
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = f"2001:db8:{uuid.uuid4().hex[:4]}::1"
    token = render_token(app)

    broken = [send(client, token, email="not an address").status_code for _ in range(3)]
    flooded = send(client, token, message="The fourth try.")

    assert (broken, flooded.status_code) == ([422] * 3, 429)
    assert 0 < int(flooded.headers["Retry-After"]) <= 60
    assert value_of(flooded, "message") == "The fourth try."


def test_a_longer_limit_names_its_wait_in_minutes(limited_client):
    app, client = limited_client("5 per minute; 1 per hour")
    assert send(client, render_token(app)).status_code == 303

    refused = send(client, render_token(app))

    assert refused.status_code == 429
    assert re.search(r"please wait (59|60) minutes and send it again", refused.text)
    assert 3500 < int(refused.headers["Retry-After"]) <= 3600


def test_spam_counts_against_the_limit_too(limited_client):
    app, client = limited_client("1 per minute")
    assert send(client, render_token(app), website="https://cheap-seo.example").status_code == 303

    assert send(client, render_token(app)).status_code == 429


# A form's token sends one lead


def test_a_replayed_token_stores_nothing_and_gets_the_form_back_with_a_fresh_token(app, client):
    token = render_token(app)
    first = send(client, token)
    replay = send(client, token, message="Buy cheap links now.")

    assert first.status_code == 303
    assert replay.status_code == 409
    assert ALREADY_SENT in replay.text
    assert replay.cache_control.no_store
    assert value_of(replay, "message") == "Buy cheap links now."
    fresh = value_of(replay, "rendered_at")
    assert fresh != token and read_render_token(fresh) is not None
    assert [lead.message for lead in stored_leads()] == [LEAD_FIELDS["message"]]
    assert send(client, fresh, message="Buy cheap links now.").status_code == 303


@pytest.mark.parametrize("variant", ["=", "==", "é"])
def test_a_token_written_differently_is_the_same_used_token(app, client, variant):
    """The signature is read leniently (padding, stray characters): the record is kept of
    what was signed, not of the token's text."""
    token = render_token(app)
    assert send(client, token).status_code == 303

    replay = send(client, token + variant, message="Buy cheap links now.")

    assert replay.status_code == 409
    assert len(stored_leads()) == 1


def test_pressing_send_twice_at_the_limit_still_shows_the_thanks_page(limited_client):
    app, client = limited_client("1 per minute")
    token = render_token(app)

    first, second = send(client, token), send(client, token)

    assert (first.status_code, second.status_code) == (303, 303)
    assert second.headers["Location"] == first.headers["Location"]


def test_a_limited_post_leaves_its_form_able_to_send_later(limited_client):
    app, client = limited_client("1 per minute")
    assert send(client, render_token(app)).status_code == 303
    token = render_token(app)
    assert send(client, token).status_code == 429

    with app.app_context():
        assert protection.claim_render_token(protection.read_render_token(token))


def test_sending_the_same_form_twice_shows_the_same_thanks_page(app, client):
    """A double click: the second answer names the lead the first one stored."""
    token = render_token(app)

    first, second = send(client, token), send(client, token)

    assert (first.status_code, second.status_code) == (303, 303)
    assert second.headers["Location"] == first.headers["Location"]
    assert len(stored_leads()) == 1


def test_a_lead_that_could_not_be_kept_can_be_sent_again_with_the_same_form(
    make_app, database_uri, tmp_path
):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    down = make_app(
        SQLALCHEMY_DATABASE_URI=unreachable_database(database_uri, tmp_path),
        LEAD_SPOOL_DIR=str(blocker / "spool"),  # cannot be created while the file is there
    )
    client = down.test_client()
    token = render_token(down)
    assert send(client, token).status_code == 503

    blocker.unlink()
    retry = send(client, token)

    assert retry.status_code == 303, retry.text
    assert list(Path(down.config["LEAD_SPOOL_DIR"]).glob("*.json"))


@pytest.mark.parametrize("store", ["refusing", "silent"])
def test_with_the_store_unreachable_the_lead_is_taken_and_a_warning_logged(
    make_app, refusing_smtp_port, silent_smtp_server, caplog, store
):
    """Refused connections, or a Redis that accepts them and never answers."""
    port = refusing_smtp_port if store == "refusing" else silent_smtp_server.port
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{port}/13")

    response = send(app.test_client(), render_token(app))

    assert response.status_code == 303
    assert "Rate limit storage unreachable" in caplog.text
    assert "Used-token storage unreachable" in caplog.text
    with app.app_context():
        assert len(stored_leads()) == 1


# Readers of one cached page each get a token of their own


def test_readers_of_one_cached_page_each_take_a_token_and_send_a_lead(app, client):
    page = client.get("/contact")
    assert 'data-token-url="/contact/form-token"' in page.text

    answers = [client.get("/contact/form-token") for _ in range(2)]
    tokens = [answer.json["token"] for answer in answers]

    assert all(answer.cache_control.no_store for answer in answers)
    assert not any("Set-Cookie" in answer.headers for answer in answers)
    assert tokens[0] != tokens[1]
    assert all(read_render_token(token) is not None for token in tokens)
    sent = [send(client, token, email=f"reader{n}@example.com") for n, token in enumerate(tokens)]
    assert [answer.status_code for answer in sent] == [303, 303]
    assert len(stored_leads()) == 2


def test_a_reader_s_own_token_keeps_the_time_the_page_was_shown(app, client):
    """The spam check counts from when the page was shown, not from the reader's first
    keystroke: a quick reader with autofill is not a bot."""
    page_token = render_token(app, age=600)

    own = client.get("/contact/form-token", query_string={"shown": page_token}).json["token"]
    unknown = client.get("/contact/form-token", query_string={"shown": "forged"}).json["token"]

    assert own != page_token
    assert 590 < read_render_token(own).age_seconds < 610
    assert read_render_token(unknown).age_seconds < 5


def test_a_form_shown_again_keeps_its_token(app, client):
    """Its time still counts from the first display, so a quick correction is no bot."""
    again = send(client, render_token(app), email="not an address")

    assert again.status_code == 422
    assert "data-token-url" not in again.text


# Served: four gunicorn workers sharing Redis


def test_one_token_posted_ten_times_at_once_stores_one_lead(tmp_path, smtp_server, redis_prefix):
    if not shutil.which(NGINX):
        pytest.skip("nginx is not installed (make nginx)")
    environment = stack_environment(
        tmp_path,
        smtp_server,
        RATELIMIT_STORAGE_URI=REDIS_URL,
        RATELIMIT_KEY_PREFIX=redis_prefix,
        FORM_MIN_SECONDS="0",
        WEB_CONCURRENCY="4",
    )
    stack = Stack(tmp_path, environment)
    stack.start("web", "proxy")
    try:
        statuses = post_at_once(stack, RENDER_TOKEN.search(fetch(stack.url + "/contact").text)[1])
    finally:
        stack.stop()

    assert sorted(statuses) == [303] + [409] * 9, stack.logs()
    engine = sa.create_engine(environment["DATABASE_URL"])
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(Lead.__table__)) == 1
    engine.dispose()


def post_at_once(stack, token, count=10):
    """`count` posts of one form's token, each with its own message, released together."""
    start = Barrier(count)

    def post(number):
        fields = {f"contact-{name}": value for name, value in LEAD_FIELDS.items()}
        fields |= {"contact-message": f"Replay number {number}", "contact-consent": "y"}
        body = urllib.parse.urlencode({**fields, "contact-rendered_at": token}).encode()
        start.wait()
        return fetch(stack.url + "/contact", body, {"Origin": stack.url}).status

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(post, range(count)))
