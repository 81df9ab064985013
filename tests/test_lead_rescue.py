"""A valid form is kept whatever stops its commit: a database in read-only mode (a failover, a
hot standby), or one whose schema is behind the code (deployed before `flask db upgrade`)."""

from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.leads import delivery
from app.leads.models import Lead


def reference_of(response):
    assert response.status_code == 303, response.text
    return response.location.rsplit("/", 1)[1]


def stored_references(app):
    with app.app_context():
        return db.session.scalars(sa.select(Lead.reference)).all()


def execute(database_uri, *statements):
    engine = sa.create_engine(database_uri, poolclass=sa.pool.NullPool)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
    engine.dispose()


def reconnect_everyone(database_uri):
    """Close every other connection to the database, so the app's next ones take its new
    defaults (as after a failover, where every connection is new)."""
    execute(
        database_uri,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )


@contextmanager
def read_only(database_uri):
    name = sa.make_url(database_uri).database
    execute(database_uri, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    reconnect_everyone(database_uri)
    try:
        yield
    finally:
        execute(
            database_uri,
            "SET default_transaction_read_only = off",
            f'ALTER DATABASE "{name}" RESET default_transaction_read_only',
        )
        reconnect_everyone(database_uri)


@pytest.fixture
def site(make_app, smtp_server):
    return make_app(LEADS_NOTIFY_TO=["sales@agency.test"], **smtp_server.config)


@pytest.mark.postgres
@pytest.mark.parametrize("database_uri", ["postgresql"], indirect=True)
def test_a_lead_sent_while_postgresql_is_read_only_is_kept_then_arrives(
    site, post_lead, smtp_server, database_uri, caplog
):
    with read_only(database_uri):
        response = post_lead(site.test_client())
        reference = reference_of(response)
        thanks = site.test_client().get(response.location)
        assert thanks.status_code == 200 and reference in thanks.text
        assert "ReadOnlySqlTransaction" in caplog.text
        assert (Path(site.config["LEAD_SPOOL_DIR"]) / f"{reference}.json").exists()

    with site.app_context():
        assert delivery.deliver_due().stored == [reference]
    assert stored_references(site) == [reference]
    (notification,) = smtp_server.wait_for(1)
    assert f"[{reference}]" in notification.message["Subject"]


def test_a_lead_sent_to_a_schema_behind_the_code_is_kept_then_arrives(
    site, post_lead, smtp_server, database_uri
):
    execute(database_uri, "ALTER TABLE leads RENAME COLUMN utm_content TO utm_content_later")
    try:
        reference = reference_of(post_lead(site.test_client()))
    finally:
        execute(database_uri, "ALTER TABLE leads RENAME COLUMN utm_content_later TO utm_content")
    assert stored_references(site) == []

    with site.app_context():
        db.engine.dispose()  # PostgreSQL caches statement plans per connection
        assert delivery.deliver_due().stored == [reference]
    assert stored_references(site) == [reference]
    assert len(smtp_server.wait_for(1)) == 1
