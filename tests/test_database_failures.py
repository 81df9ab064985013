"""What a database failure must not cost: a lead being sent, or a staff page."""

import json
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.leads import delivery, spool
from app.leads.models import OutboxMessage
from tests.conftest import reference_of, spool_file, stored_leads, unreachable_database


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


# The spool: a lead sent while the database is down


@pytest.fixture
def outage(make_app, database_uri, tmp_path):
    """The site while its database cannot be reached, and the same site once it is back."""
    # Many visitors at once rather than one visitor many times: a rate limit out of reach.
    settings = {"LEADS_NOTIFY_TO": ["sales@agency.test"], "CONTACT_RATE_LIMIT": "1000 per minute"}
    unreachable = unreachable_database(database_uri, tmp_path)
    down = make_app(SQLALCHEMY_DATABASE_URI=unreachable, **settings)
    return down, lambda **more: make_app(**settings, **more)


def test_a_lead_sent_while_the_database_is_down_is_kept_then_arrives_once(
    outage, post_lead, smtp_server
):
    down, back_up = outage
    visitor = down.test_client()

    reference = reference_of(post_lead(visitor, page="https://agency.test/posts/a?utm_source=x"))
    thanks = visitor.get(f"/contact/thanks/{reference}")

    assert thanks.status_code == 200 and reference in thanks.text
    kept = spool_file(down, reference)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    record = json.loads(kept.read_text())
    assert (record["name"], record["utm_source"], record["status"]) == ("Ada Lovelace", "x", "new")

    app = back_up(**smtp_server.config)
    with app.app_context():
        assert delivery.deliver_due().stored == [reference]
        assert delivery.deliver_due().stored == []

    (lead,) = stored_leads(app)
    assert (lead.reference, lead.name, lead.source_path) == (reference, "Ada Lovelace", "/posts/a")
    assert lead.created_at.isoformat() == record["created_at"]
    (received,) = smtp_server.wait_for(2, timeout=1)
    assert f"[{reference}]" in received.message["Subject"]
    assert not kept.exists()


def test_a_corrupt_spool_file_is_named_and_left_while_the_others_move_in(
    outage, post_lead, smtp_server
):
    down, back_up = outage
    references = [
        reference_of(post_lead(down.test_client(), message=f"Question {n}")) for n in range(2)
    ]
    broken = spool_file(down, "LC-0000-0000")
    broken.write_text('{"reference": "LC-0000-0000", "name": "Half a wri')  # a crash mid-write

    app = back_up(**smtp_server.config)
    result = app.test_cli_runner().invoke(args=["leads", "deliver", "--once"])

    assert result.exit_code == 0, result.output
    assert f"{broken}: not a complete lead record" in result.output
    assert sorted(lead.reference for lead in stored_leads(app)) == sorted(references)
    assert broken.exists()
    assert len(smtp_server.wait_for(2)) == 2


def test_two_workers_draining_at_once_store_each_lead_once(outage, post_lead):
    down, back_up = outage
    references = {reference_of(post_lead(down.test_client())) for _ in range(20)}
    app = back_up()

    def drain():
        with app.app_context():
            moved, problems = spool.drain()
            db.session.remove()
        assert problems == []
        return moved

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [pool.submit(drain) for _ in range(2)]
    moved = [reference for run in runs for reference in run.result()]

    assert sorted(moved) == sorted(references)
    leads = stored_leads(app)
    assert sorted(lead.reference for lead in leads) == sorted(references)
    with app.app_context():
        messages = db.session.scalars(sa.select(OutboxMessage)).all()
        assert len(messages) == len(references)


def test_when_neither_database_nor_spool_can_take_the_lead_the_visitor_is_told(
    make_app, database_uri, tmp_path, post_lead
):
    (tmp_path / "a-file").write_text("")
    down = make_app(
        SQLALCHEMY_DATABASE_URI=unreachable_database(database_uri, tmp_path),
        LEAD_SPOOL_DIR=str(tmp_path / "a-file" / "spool"),  # cannot be created
    )

    response = post_lead(down.test_client(), message="Our launch is in May.")

    assert response.status_code == 503
    assert "it has not been sent" in response.text
    assert "Our launch is in May." in response.text
    assert response.headers["Cache-Control"].startswith("no-store")


def test_a_lead_sent_when_no_database_connection_is_free_is_kept(make_app, post_lead):
    """A pool that has no free connection within its timeout is an outage for the form too."""
    busy = make_app(
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.2}
    )
    with busy.app_context(), db.engine.connect() as the_only_connection:
        the_only_connection.exec_driver_sql("SELECT 1")
        reference = reference_of(post_lead(busy.test_client()))

    assert spool_file(busy, reference).exists()
    assert stored_leads(busy) == []


@pytest.mark.postgres
@pytest.mark.parametrize("database_uri", ["postgresql"], indirect=True)
def test_a_database_host_that_never_answers_holds_the_form_seconds_not_forever(
    make_app, post_lead, silent_smtp_server
):
    """A listener that never speaks, as a host gone silent behind a firewall looks."""
    silent = f"postgresql+psycopg://postgres@127.0.0.1:{silent_smtp_server.port}/gone"
    down = make_app(SQLALCHEMY_DATABASE_URI=silent, DATABASE_CONNECT_TIMEOUT=1)

    with ThreadPoolExecutor(max_workers=1) as pool:
        response = pool.submit(post_lead, down.test_client()).result(timeout=30)

    assert spool_file(down, reference_of(response)).exists()
