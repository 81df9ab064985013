"""Probes for a load balancer or orchestrator: is the process alive, can it do its work."""

from datetime import timedelta
from functools import cache

from flask import Blueprint, current_app, jsonify
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from app.backup.schema import head, revision_of
from app.extensions import db
from app.leads import spool
from app.leads.models import OutboxMessage
from app.types import utcnow

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz():
    """Alive: answers without the database, so a database outage does not restart the app."""
    return probe_response(200, status="ok")


@blueprint.get("/readyz")
def readyz():
    """Ready for traffic: the database answers, its schema is this code's, mail is moving,
    and the spool can keep leads. Leads waiting in the spool need a person or the database
    back, not fewer nodes to take the form: they are reported, and the node stays in
    service."""
    try:
        backlog, reason = spool.backlog(), None
    except OSError as error:
        backlog, reason = None, f"spool cannot be read: {error.strerror}"
    reason = database_problem() or reason
    if reason:
        return probe_response(503, status="unavailable", reason=reason)
    warnings = spool_warnings(backlog)
    return probe_response(200, status="ok", **({"warnings": warnings} if warnings else {}))


def database_problem():
    try:
        with db.engine.connect() as connection:
            return schema_problem(connection) or outbox_problem(connection)
    except SQLAlchemyError:
        return "database unreachable"


@cache
def expected_revision():
    # The migrations ship with the code: read once per process.
    return head()


def schema_problem(connection):
    revision, expected = revision_of(connection), expected_revision()
    if revision != expected:
        return f"database schema at {revision or 'no revision'}, code expects {expected}"
    return None


def outbox_problem(connection):
    oldest = connection.execute(
        select(func.min(OutboxMessage.created_at)).where(OutboxMessage.status == "pending")
    ).scalar()
    if oldest is None:
        return None
    age = utcnow() - oldest
    limit = timedelta(seconds=current_app.config["READY_MAX_OUTBOX_AGE_SECONDS"])
    if age > limit:
        return f"outbox stuck: oldest pending message is {int(age.total_seconds())} s old"
    return None


def spool_warnings(backlog):
    warnings = []
    if backlog.oldest_kept is not None:
        age = utcnow() - backlog.oldest_kept
        if age > timedelta(seconds=current_app.config["READY_MAX_SPOOL_AGE_SECONDS"]):
            warnings.append(f"spool backlog: oldest kept lead is {int(age.total_seconds())} s old")
    if backlog.quarantined:
        leads = "lead" if backlog.quarantined == 1 else "leads"
        warnings.append(
            f"{backlog.quarantined} kept {leads} quarantined: see `flask leads spool list`"
        )
    return warnings


def probe_response(code, **body):
    response = jsonify(body)
    response.status_code = code
    response.headers["Cache-Control"] = "no-store"
    return response
