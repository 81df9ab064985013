"""Limits of the "Let's connect" form that are fair to people: only messages that would be
stored count, a refusal keeps what was typed, one message makes one lead, and the limits hold
while the shared store is away."""

import re
import shutil
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import html5lib
import pytest
import sqlalchemy as sa

from app.extensions import db
from app.leads.models import Lead
from app.leads.protection import read_render_token
from tests.conftest import LEAD_FIELDS, SITE_URL, render_token, unreachable_database
from tests.stack import Stack, fetch, stack_environment
from tests.test_serve import NGINX

REDIS_URL = "redis://127.0.0.1:6379/13"
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
    accepted = [
        send(client, render_token(app), message=f"Question {n}").status_code for n in range(2)
    ]
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

    refused = send(client, render_token(app), message="Another question.")

    assert refused.status_code == 429
    assert re.search(r"please wait (59|60) minutes and send it again", refused.text)
    assert 3500 < int(refused.headers["Retry-After"]) <= 3600


def test_spam_counts_against_the_limit_too(limited_client):
    app, client = limited_client("1 per minute")
    assert send(client, render_token(app), website="https://cheap-seo.example").status_code == 303

    assert send(client, render_token(app), message="Another question.").status_code == 429


# One message makes one lead; one token serves every reader of a page


def test_sending_the_same_message_twice_shows_the_thanks_page_of_one_lead(app, client):
    """A double click, or the form sent again from the back button with another token."""
    first, second = send(client, render_token(app)), send(client, render_token(app))

    assert (first.status_code, second.status_code) == (303, 303)
    assert second.headers["Location"] == first.headers["Location"]
    assert len(stored_leads()) == 1


def test_two_readers_of_one_cached_page_each_store_their_lead_with_its_token(app, client):
    token = render_token(app)

    sent = [send(client, token, email=f"reader{n}@example.com") for n in range(2)]

    assert [answer.status_code for answer in sent] == [303, 303]
    assert len({answer.headers["Location"] for answer in sent}) == 2
    assert [lead.status for lead in stored_leads()] == ["new", "new"]


def test_a_repeat_whose_lead_is_gone_is_stored_rather_than_lost(make_app):
    """The earlier lead was erased (or never committed): once the first post's own time is
    up, the repeat is stored, not turned away."""
    app = make_app(DATABASE_FORM_TIMEOUT=1)
    client = app.test_client()
    assert send(client, render_token(app)).status_code == 303
    with app.app_context():
        db.session.execute(sa.delete(Lead))
        db.session.commit()

    again = send(client, render_token(app))

    assert again.status_code == 303
    with app.app_context():
        assert len(stored_leads()) == 1
    assert send(client, render_token(app)).headers["Location"] == again.headers["Location"]


def test_pressing_send_twice_at_the_limit_still_shows_the_thanks_page(limited_client):
    app, client = limited_client("1 per minute")
    token = render_token(app)

    first, second = send(client, token), send(client, token)

    assert (first.status_code, second.status_code) == (303, 303)
    assert second.headers["Location"] == first.headers["Location"]


def test_a_limited_message_can_be_sent_once_the_limit_allows(limited_client):
    app, client = limited_client("1 per 2 seconds")
    assert send(client, render_token(app)).status_code == 303
    message = "A second question, sent too soon."
    assert send(client, render_token(app), message=message).status_code == 429

    time.sleep(2)
    again = send(client, render_token(app), message=message)

    assert again.status_code == 303
    with app.app_context():
        assert [lead.message for lead in stored_leads()][-1] == message


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


@pytest.fixture(params=["refusing", "silent"])
def unreachable_store(request, refusing_smtp_port, silent_smtp_server):
    """A Redis URL whose connections are refused, or accepted and never answered."""
    port = refusing_smtp_port if request.param == "refusing" else silent_smtp_server.port
    return f"redis://127.0.0.1:{port}/13"


def test_with_the_store_unreachable_the_limits_hold_in_memory_with_a_warning(
    make_app, unreachable_store, caplog
):
    app = make_app(
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI=unreachable_store,
        CONTACT_RATE_LIMIT="2 per minute",
    )
    client = app.test_client()

    statuses = [
        send(client, render_token(app), message=f"Question {n}").status_code for n in range(3)
    ]
    repeat = send(client, render_token(app), message="Question 0")

    assert statuses == [303, 303, 429]
    assert repeat.status_code == 303
    # Tried once, then left alone for a while: a silent store costs one timeout, not one a call.
    assert caplog.text.count("Rate limit storage unreachable") == 1
    assert "counting in this process's memory" in caplog.text
    with app.app_context():
        assert [lead.message for lead in stored_leads()] == ["Question 0", "Question 1"]


# The form's own token: dated when the reader could start typing


def test_a_reader_takes_a_token_of_their_own_dated_now(app, client):
    page = client.get("/contact")
    assert 'data-token-url="/contact/form-token"' in page.text

    answers = [
        client.get("/contact/form-token", query_string={"shown": render_token(app, age=600)})
        for _ in range(2)
    ]
    tokens = [answer.json["token"] for answer in answers]

    assert all(answer.cache_control.no_store for answer in answers)
    assert not any("Set-Cookie" in answer.headers for answer in answers)
    assert tokens[0] != tokens[1]
    assert all(read_render_token(token).age_seconds < 2 for token in tokens)  # not dated back


def test_a_bot_posting_one_second_after_taking_a_token_is_stored_as_spam(app, client):
    token = client.get("/contact/form-token").json["token"]
    time.sleep(1)

    response = send(client, token)

    assert response.status_code == 303
    (lead,) = stored_leads()
    assert lead.status == "spam"
    # Signed times are whole seconds: one second later reads as 1.0 to 2.0.
    assert re.fullmatch(r"sent [12]\.\d s after the form was shown to them", lead.spam_reason)
    assert lead.messages == []  # nobody is notified


def test_a_form_shown_again_keeps_its_token(app, client):
    """Its time still counts from the first display, so a quick correction is no bot."""
    again = send(client, render_token(app), email="not an address")

    assert again.status_code == 422
    assert "data-token-url" not in again.text


# Served: four gunicorn workers sharing Redis


def test_one_message_posted_ten_times_at_once_stores_one_lead(tmp_path, smtp_server, redis_prefix):
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
        answers = post_at_once(stack, RENDER_TOKEN.search(fetch(stack.url + "/contact").text)[1])
    finally:
        stack.stop()

    assert [answer.status for answer in answers] == [303] * 10, stack.logs()
    assert len({answer.headers["Location"] for answer in answers}) == 1
    engine = sa.create_engine(environment["DATABASE_URL"])
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(Lead.__table__)) == 1
    engine.dispose()


def post_at_once(stack, token, count=10):
    """`count` posts of one message, released together."""
    start = Barrier(count)
    fields = {f"contact-{name}": value for name, value in LEAD_FIELDS.items()}
    fields |= {"contact-consent": "y", "contact-rendered_at": token}
    body = urllib.parse.urlencode(fields).encode()

    def post(_):
        start.wait()
        return fetch(stack.url + "/contact", body, {"Origin": stack.url})

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(post, range(count)))
