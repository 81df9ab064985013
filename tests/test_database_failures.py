"""What a database failure must not cost: a lead being sent, or a staff page."""

import pytest
import sqlalchemy as sa

from app.extensions import db
from tests.conftest import free_port


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


def unreachable_database(database_uri, tmp_path):
    """A URL of the same kind as database_uri that no database answers."""
    if database_uri.startswith("postgresql"):
        return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone"
    return f"sqlite:///{tmp_path / 'no-such-folder' / 'site.db'}"


def test_while_the_database_is_down_staff_pages_answer_a_clear_503(
    make_app, client, editor, database_uri, tmp_path, caplog
):
    down = make_app(SQLALCHEMY_DATABASE_URI=unreachable_database(database_uri, tmp_path))
    staff = down.test_client()
    cookie = client.get_cookie("staff_session", path="/staff")
    staff.set_cookie("staff_session", cookie.value, path="/staff")

    response = staff.get("/staff/leads/")

    assert response.status_code == 503
    assert "We cannot reach our database at the moment" in response.text
    assert response.headers["Retry-After"] == "30"
    assert "no-store" in response.headers["Cache-Control"]
    assert "Database unavailable" in caplog.text
    assert client.get("/staff/leads/").status_code == 200  # nobody was logged out
