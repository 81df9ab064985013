import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.leads.models import OutboxMessage
from app.types import utcnow
from tests.conftest import free_port

# Nothing listens there: connections are refused at once.
UNREACHABLE = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"


@pytest.fixture
def unreachable_app(make_app):
    return make_app(SQLALCHEMY_DATABASE_URI=UNREACHABLE, DATABASE_CONNECT_TIMEOUT=1)


def queue_message(make_lead, age, status="pending"):
    created = utcnow() - age
    message = OutboxMessage(
        lead=make_lead(),
        kind="lead_notification",
        recipient="sales@agency.test",
        status=status,
        created_at=created,
        next_attempt_at=created,
    )
    db.session.add(message)
    db.session.commit()
    return message


def test_healthz_answers_without_the_database(unreachable_app):
    response = unreachable_app.test_client().get("/healthz")

    assert response.status_code == 200
    assert response.json == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_is_ok_on_a_migrated_database_with_mail_moving(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers


def test_readyz_fails_when_the_database_is_unreachable(unreachable_app):
    response = unreachable_app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "reason": "database unreachable"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_fails_when_the_outbox_is_stuck(app, client, make_lead):
    app.config["READY_MAX_OUTBOX_AGE_SECONDS"] = 600
    queue_message(make_lead, timedelta(seconds=30))
    assert client.get("/readyz").status_code == 200

    stuck = queue_message(make_lead, timedelta(minutes=15))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["reason"].startswith("outbox stuck: oldest pending message is 9")

    stuck.status = "sent"
    db.session.commit()
    assert client.get("/readyz").status_code == 200


def test_an_old_message_that_failed_for_good_does_not_block_readiness(client, make_lead):
    queue_message(make_lead, timedelta(days=2), status="failed")

    assert client.get("/readyz").status_code == 200


@pytest.fixture
def stamped_behind(app):
    """The database claims an older schema revision, until the test ends."""
    with db.engine.begin() as connection:
        head = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    yield head
    with db.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE alembic_version SET version_num = :head"), {"head": head}
        )


def test_readyz_fails_when_migrations_are_behind(client, stamped_behind):
    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json["reason"] == f"database schema at 0001, code expects {stamped_behind}"


def keep_file(app, name, age=timedelta(0), folder=""):
    """A file in the spool (or one of its folders), kept `age` ago."""
    path = Path(app.config["LEAD_SPOOL_DIR"]) / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    moment = time.time() - age.total_seconds()
    os.utime(path, (moment, moment))
    return path


def test_readyz_reports_a_kept_lead_that_waits_too_long_and_stays_in_service(app, client):
    """Kept leads wait for the database; taking nodes out would only turn the form away."""
    app.config["READY_MAX_SPOOL_AGE_SECONDS"] = 600
    keep_file(app, "LC-AAAA-AAAA.json", timedelta(seconds=30))
    keep_file(app, "tmp1234.tmp", timedelta(hours=2))  # not a lead
    assert client.get("/readyz").json == {"status": "ok"}

    old = keep_file(app, "LC-BBBB-BBBB.json", timedelta(minutes=15))
    response = client.get("/readyz")
    assert response.status_code == 200
    (warning,) = response.json["warnings"]
    assert warning.startswith("spool backlog: oldest kept lead is 9")

    old.unlink()
    assert client.get("/readyz").json == {"status": "ok"}


def test_readyz_reports_a_quarantined_lead_and_keeps_the_node_in_service(app, client):
    """A lead the database refused needs a person; taking every node out would not help."""
    path = keep_file(app, "LC-AAAA-AAAA.json", folder="quarantine")
    keep_file(app, "LC-AAAA-AAAA.attempts", folder="quarantine")

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json["warnings"] == ["1 kept lead quarantined: see `flask leads spool list`"]
    path.unlink()
    assert "warnings" not in client.get("/readyz").json


def test_readyz_fails_when_the_spool_cannot_be_read(make_app, tmp_path):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    app = make_app(LEAD_SPOOL_DIR=str(not_a_folder))

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.json["reason"] == "spool cannot be read: Not a directory"
