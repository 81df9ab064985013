"""A database host that stops answering must not hold a visitor's form post."""

import socket
import threading
from contextlib import suppress

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app.config import ConfigurationError
from app.database_deadline import time_limit
from app.extensions import db
from app.leads import delivery
from tests.conftest import reference_of, spool_file, stored_leads

# How long a form post may wait while the database is silent: the default time limit (8 s)
# and a little, well inside the 60 s after which nginx gives the visitor a 504.
FORM_ANSWER_SECONDS = 15


class BlackHoleProxy:
    """A TCP proxy on loopback in front of PostgreSQL that can stop passing bytes on while
    every connection stays open: a host gone silent, as a partition makes it. Its kernel
    still acknowledges what is sent, so TCP keepalives and tcp_user_timeout never notice."""

    def __init__(self, database_uri):
        self.upstream = make_url(database_uri)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.passing = threading.Event()
        self.passing.set()
        self.sockets = []
        threading.Thread(target=self.accept, daemon=True).start()

    @property
    def url(self):
        """The database's URL, through the proxy."""
        port = self.listener.getsockname()[1]
        return self.upstream.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)

    def black_hole(self):
        self.passing.clear()

    def restore(self):
        self.passing.set()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection((self.upstream.host, self.upstream.port or 5432))
            self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self.pass_on, args=(source, sink), daemon=True).start()

    def pass_on(self, source, sink):
        """Bytes are held while black-holed, not dropped: TCP delivers them once it heals."""
        try:
            while data := source.recv(65536):
                self.passing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            hang_up(source, sink)

    def close(self):
        self.restore()
        self.listener.close()
        hang_up(*self.sockets)


def hang_up(*sockets):
    for each in sockets:
        with suppress(OSError):
            each.shutdown(socket.SHUT_RDWR)
        each.close()


@pytest.fixture
def proxy(database_uri):
    proxy = BlackHoleProxy(database_uri)
    yield proxy
    proxy.close()


def within(seconds, call, *args, **kwargs):
    """What call(*args, **kwargs) returns, which must be within `seconds`. In a thread of its
    own, so a call that hangs fails the test instead of holding it."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call(*args, **kwargs)
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.mark.postgres
@pytest.mark.parametrize("database_uri", ["postgresql"], indirect=True)
def test_a_black_holed_connection_answers_the_form_in_time_and_the_lead_arrives_later(
    make_app, proxy, post_lead
):
    app = make_app(SQLALCHEMY_DATABASE_URI=proxy.url)  # the default time limits
    visitor = app.test_client()
    first = reference_of(post_lead(visitor, message="Sent while all is well."))  # now pooled
    proxy.black_hole()

    response = within(FORM_ANSWER_SECONDS, post_lead, visitor, message="Sent into the silence.")

    reference = reference_of(response)
    assert spool_file(app, reference).exists()
    proxy.restore()
    with app.app_context():
        assert delivery.deliver_due().stored == [reference]
    assert [lead.reference for lead in stored_leads(app)] == [first, reference]


@pytest.mark.postgres
@pytest.mark.parametrize("database_uri", ["postgresql"], indirect=True)
def test_a_repeated_message_sent_into_the_silence_shows_its_first_lead_in_time(
    make_app, proxy, post_lead
):
    """A repeat knows its first lead from the shared store; whether staff erased that lead
    is asked of the database only within a time limit, and silence is no answer."""
    app = make_app(SQLALCHEMY_DATABASE_URI=proxy.url, RATELIMIT_ENABLED=True)
    visitor = app.test_client()
    first = reference_of(post_lead(visitor))
    proxy.black_hole()

    response = within(FORM_ANSWER_SECONDS, post_lead, visitor)

    assert reference_of(response) == first
    assert list(spool_file(app, first).parent.glob("*.json")) == []


@pytest.mark.postgres
@pytest.mark.parametrize("database_uri", ["postgresql"], indirect=True)
def test_a_new_connection_that_gets_no_answer_waits_no_longer_than_the_form_may(
    make_app, proxy, post_lead
):
    app = make_app(
        SQLALCHEMY_DATABASE_URI=proxy.url, DATABASE_CONNECT_TIMEOUT=60, DATABASE_FORM_TIMEOUT=2
    )
    proxy.black_hole()

    response = within(FORM_ANSWER_SECONDS, post_lead, app.test_client())

    assert spool_file(app, reference_of(response)).exists()


@pytest.mark.postgres
@pytest.mark.parametrize("database_uri", ["postgresql"], indirect=True)
def test_a_transaction_begun_before_the_time_limit_is_cut_off_too(make_app, proxy):
    app = make_app(SQLALCHEMY_DATABASE_URI=proxy.url)

    def read_past_the_limit():
        with app.app_context():
            db.session.execute(sa.select(1))  # the session now holds a connection
            proxy.black_hole()
            with pytest.raises(sa.exc.OperationalError), time_limit(db.session, 2):
                db.session.execute(sa.select(1))

    within(FORM_ANSWER_SECONDS, read_past_the_limit)


WAITING_FOR_LEADS = """
    SELECT count(*) FROM pg_locks
    WHERE NOT granted AND relation = 'leads'::regclass
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


@pytest.mark.postgres
@pytest.mark.parametrize("database_uri", ["postgresql"], indirect=True)
def test_a_locked_leads_table_sends_the_lead_to_the_spool_and_leaves_nothing_waiting(
    make_app, post_lead, database_uri
):
    """The server cancels the statement itself (statement_timeout): a connection cut off
    instead would leave its server process queued for the lock until it is released."""
    app = make_app(DATABASE_FORM_TIMEOUT=2)
    holder = sa.create_engine(database_uri, poolclass=sa.pool.NullPool)
    with holder.begin() as connection:
        connection.exec_driver_sql("LOCK TABLE leads IN ACCESS EXCLUSIVE MODE")
        response = within(FORM_ANSWER_SECONDS, post_lead, app.test_client())
        waiting = connection.exec_driver_sql(WAITING_FOR_LEADS).scalar()
    holder.dispose()

    assert spool_file(app, reference_of(response)).exists()
    assert waiting == 0


@pytest.mark.postgres
@pytest.mark.parametrize("database_uri", ["postgresql"], indirect=True)
def test_the_form_s_statement_timeout_ends_with_its_transaction(make_app, post_lead):
    app = make_app()
    reference_of(post_lead(app.test_client()))

    with app.app_context():  # the same pooled connection, for any other work
        assert db.session.scalar(sa.text("SHOW statement_timeout")) == "0"


POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def test_postgresql_connections_get_tcp_keepalives_and_a_user_timeout(make_app):
    connect_args = make_app(SQLALCHEMY_DATABASE_URI=POSTGRES_URL).config[
        "SQLALCHEMY_ENGINE_OPTIONS"
    ]["connect_args"]
    assert connect_args == {
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 10_000,
    }


def test_tcp_settings_in_the_database_url_win(make_app):
    url = f"{POSTGRES_URL}?keepalives_idle=60&tcp_user_timeout=0"
    connect_args = make_app(SQLALCHEMY_DATABASE_URI=url).config["SQLALCHEMY_ENGINE_OPTIONS"][
        "connect_args"
    ]
    assert "keepalives_idle" not in connect_args and "tcp_user_timeout" not in connect_args
    assert connect_args["keepalives_count"] == 3


def test_a_form_time_limit_of_zero_refuses_to_start(make_app):
    with pytest.raises(ConfigurationError, match="DATABASE_FORM_TIMEOUT must be more than 0"):
        make_app(SQLALCHEMY_DATABASE_URI=POSTGRES_URL, DATABASE_FORM_TIMEOUT=0)
