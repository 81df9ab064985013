"""What a database failure must not cost: a lead being sent, or a staff page."""

import pytest
import sqlalchemy as sa

from app.extensions import db


def terminate_other_backends(database_uri):
    """What a PostgreSQL restart does to this database's pooled connections."""
    engine = sa.create_engine(database_uri, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        terminated = connection.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).all()
    engine.dispose()
    return len(terminated)


@pytest.mark.postgres
@pytest.mark.parametrize("database_uri", ["postgresql"], indirect=True)
def test_after_every_backend_is_terminated_the_next_form_post_and_staff_page_work(
    app, client, editor, post_lead, database_uri
):
    visitor = app.test_client()
    assert client.get("/staff/leads/").status_code == 200
    db.session.remove()  # between requests, as a server is: every connection back in the pool

    assert terminate_other_backends(database_uri) >= 1

    response = post_lead(visitor)
    assert response.status_code == 303, response.text
    inbox = client.get("/staff/leads/")
    assert inbox.status_code == 200
    assert "Ada Lovelace" in inbox.text
