"""A time limit for database work someone is waiting on, such as a visitor's form post.

A PostgreSQL host that stops answering (a network partition, not a refusal) leaves a blocked
libpq call waiting until the kernel gives up on TCP, minutes later. TCP keepalives and
tcp_user_timeout (app/config.py) catch a host that no longer acknowledges packets, but not
one whose packets are acknowledged by something in between that no longer passes them on.
Inside `time_limit(session, seconds)`:

- a timer thread (no signals: any worker or server thread may run the block) shuts down the
  socket of each connection the block is using when the time is up, so the blocked call
  returns at once with a disconnection error;
- a new connection waits for the server at most the time left (libpq's connect_timeout);
- each statement gets most of the time left as its statement_timeout: a server that answers
  but waits (on a lock) cancels the statement itself, and its connection stays usable.

Every connection taken from the pool is pinged first, as pool_pre_ping would do, so that a
dead one is replaced; pool_pre_ping pings before any event sees the connection, so a ping
that hangs could not be cut. On SQLite there is no socket and no statement timeout: only the
ping applies.
"""

import logging
import math
import os
import socket
import threading
import time
from contextlib import closing, contextmanager, suppress
from contextvars import ContextVar

from sqlalchemy import event
from sqlalchemy.exc import InvalidatePoolError

log = logging.getLogger("app.database")

current_deadline = ContextVar("current_deadline", default=None)
# The pool entry's info key naming the deadline that watches its connection.
WATCHED_BY = "deadline"
# The share of the time left that a statement may wait on the server: the rest is for the
# server's cancel to come back before the timer cuts the connection.
SERVER_SHARE = 0.75


class Deadline:
    """The end of one block's time, and the connections to cut when it comes."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.ends_at = time.monotonic() + seconds
        self.over = False
        self.connections = set()
        self.lock = threading.Lock()

    def seconds_left(self):
        return self.ends_at - time.monotonic()

    def watch(self, dbapi_connection, info):
        """Cut this connection when the time is up; False if it is up already."""
        with self.lock:
            if self.over:
                return False
            self.connections.add(dbapi_connection)
            info[WATCHED_BY] = self
            return True

    def release(self, dbapi_connection):
        """Back in the pool, or about to be closed: no longer this block's to cut."""
        with self.lock:
            self.connections.discard(dbapi_connection)

    def expire(self):
        with self.lock:
            if self.over:
                return
            self.over = True
            for connection in self.connections:
                cut(connection)
            count = len(self.connections)
        if count:
            log.warning(
                "The database did not answer within %g s: cut off %d connection(s)",
                self.seconds,
                count,
            )

    def end(self):
        """The block is done: a timer firing late cuts nothing."""
        with self.lock:
            self.over = True
            self.connections.clear()


def cut(dbapi_connection):
    """Shut the connection's socket down, so a call blocked on it returns with an error.

    Shut down through a duplicate descriptor, never closed: the driver still owns its
    descriptor and closes it itself once it sees the connection is broken."""
    try:
        descriptor = dbapi_connection.fileno()
    except Exception:  # no socket (SQLite), or the connection is closed already
        return
    # OSError: disconnected already.
    with socket.socket(fileno=os.dup(descriptor)) as duplicate, suppress(OSError):
        duplicate.shutdown(socket.SHUT_RDWR)


@contextmanager
def time_limit(session, seconds):
    """Give up the session's database work in the block after `seconds`: whatever call is
    still waiting then raises a disconnection error (an OperationalError). Only on
    PostgreSQL: SQLite has neither a socket to cut nor a statement timeout."""
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    deadline = Deadline(seconds)
    token = current_deadline.set(deadline)
    timer = threading.Timer(seconds, deadline.expire)
    timer.daemon = True
    timer.start()
    try:
        limit_connection(session.connection(), deadline)
        yield
    finally:
        timer.cancel()
        deadline.end()
        current_deadline.reset(token)


def limit_connection(connection, deadline):
    """The session's connection: one taken from the pool now was limited at checkout; one
    that a transaction begun before the block holds is limited here."""
    pooled = connection.connection
    if pooled.info.get(WATCHED_BY) is deadline:
        return
    watch(deadline, pooled.dbapi_connection, pooled.info, connection.dialect)
    connection.exec_driver_sql(statement_timeout(deadline))


def init_engine(engine):
    """Ping each connection taken from the pool, and limit it inside a time limit."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkout")
    def limit_and_ping(dbapi_connection, connection_record, connection_proxy):
        deadline = current_deadline.get()
        if deadline is not None:
            watch(deadline, dbapi_connection, connection_record.info, dialect)
        ping(dbapi_connection, dialect)
        if deadline is not None:
            with closing(dbapi_connection.cursor()) as cursor:
                cursor.execute(statement_timeout(deadline))

    event.listen(engine, "checkin", release)
    event.listen(engine, "close", release)
    if dialect.name == "postgresql":
        event.listen(engine, "do_connect", wait_at_most_the_time_left)


def watch(deadline, dbapi_connection, info, dialect):
    if not deadline.watch(dbapi_connection, info):
        raise time_is_up(deadline, dialect)


def release(dbapi_connection, connection_record):
    deadline = connection_record.info.pop(WATCHED_BY, None)
    if deadline is not None:
        deadline.release(dbapi_connection)


def ping(dbapi_connection, dialect):
    """As pool_pre_ping does: a connection that fails is replaced, and so is every pooled
    connection older than it (a restart or a partition took them all)."""
    try:
        dialect.do_ping(dbapi_connection)
    except dialect.loaded_dbapi.Error as error:
        raise InvalidatePoolError(str(error)) from error


def statement_timeout(deadline):
    """SET LOCAL: the limit ends with the transaction, before the connection goes back. At
    least 1 ms: a statement_timeout of 0 means no limit at all."""
    milliseconds = max(1, round(deadline.seconds_left() * SERVER_SHARE * 1000))
    return f"SET LOCAL statement_timeout = {milliseconds:d}"


def wait_at_most_the_time_left(dialect, connection_record, cargs, cparams):
    """A new connection's connect_timeout, shortened to the time left (whole seconds)."""
    deadline = current_deadline.get()
    if deadline is None:
        return
    left = deadline.seconds_left()
    if left <= 0:
        raise time_is_up(deadline, dialect)
    configured = float(cparams.get("connect_timeout") or 0)  # 0: no limit of its own
    cparams["connect_timeout"] = math.ceil(min(left, configured) if configured > 0 else left)


def time_is_up(deadline, dialect):
    """The driver's own error class, so SQLAlchemy reports it as it does a timeout."""
    return dialect.loaded_dbapi.OperationalError(
        f"the database did not answer within {deadline.seconds:g} s"
    )
