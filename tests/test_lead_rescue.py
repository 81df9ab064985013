"""A valid form is kept whatever stops its commit: a database in read-only mode (a failover, a
hot standby), or one whose schema is behind the code (deployed before `flask db upgrade`)."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.leads import delivery
from tests.conftest import (
    read_only,
    reference_of,
    spool_file,
    stored_leads,
    unreachable_database,
)


def stored_references(app):
    return [lead.reference for lead in stored_leads(app)]


def execute(database_uri, *statements):
    engine = sa.create_engine(database_uri, poolclass=sa.pool.NullPool)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
    engine.dispose()


@pytest.fixture
def site(make_app, smtp_server):
    return make_app(LEADS_NOTIFY_TO=["sales@agency.test"], **smtp_server.config)


def test_a_lead_sent_while_the_database_is_read_only_is_kept_then_arrives(
    make_app, site, post_lead, smtp_server, database_uri
):
    with read_only(database_uri) as read_only_uri:
        standby = make_app(SQLALCHEMY_DATABASE_URI=read_only_uri)
        response = post_lead(standby.test_client())
        reference = reference_of(response)
        thanks = standby.test_client().get(response.location)
        assert thanks.status_code == 200 and reference in thanks.text
        assert spool_file(standby, reference).exists()

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


def test_a_double_click_while_the_database_is_down_keeps_one_lead(
    make_app, post_lead, database_uri, tmp_path
):
    """The second post finds the lead the first one kept in the spool, and shows its page."""
    down = make_app(SQLALCHEMY_DATABASE_URI=unreachable_database(database_uri, tmp_path))
    visitor = down.test_client()

    first, second = post_lead(visitor), post_lead(visitor)

    assert reference_of(second) == reference_of(first)
    assert [path.name for path in Path(down.config["LEAD_SPOOL_DIR"]).glob("*.json")] == [
        f"{reference_of(first)}.json"
    ]
