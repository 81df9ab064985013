"""The spool's drain, quarantine and commands: no kept lead stops another one, or the mail."""

import json
import os
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.leads import delivery, spool
from app.leads.models import Lead, new_reference
from app.leads.notifications import queue_notifications
from app.types import utcnow
from tests.conftest import csrf_token, deliver, read_only, spool_file, stored_leads

NOTIFY = {"LEADS_NOTIFY_TO": ["sales@agency.test"]}
KEPT_FIELDS = {
    "name": "Ada Lovelace",
    "email": "ada@example.org",
    "message": "We are launching a new sensor.",
    "consent_text": "I agree.",
    "consent_version": "test",
    "status": "new",
}
CORRUPT = "LC-0000-0004"


def keep(app, age=timedelta(0), **fields):
    """Keep a lead in the spool, as a form post does when its commit fails; its reference."""
    reference = fields.pop("reference", None) or new_reference()
    with app.app_context():
        values = {**KEPT_FIELDS, **fields}
        spool.keep(Lead(reference=reference, created_at=utcnow() - age, **values))
    return reference


def store_with_notification(app):
    """A lead stored as a form post stores it, its notification waiting to be sent."""
    with app.app_context():
        lead = Lead(reference=new_reference(), created_at=utcnow(), **KEPT_FIELDS)
        db.session.add(lead)
        queue_notifications(lead)
        db.session.commit()
        db.session.remove()


def spool_folder(app):
    return Path(app.config["LEAD_SPOOL_DIR"])


def in_quarantine(app, reference):
    return spool_folder(app) / spool.QUARANTINE / f"{reference}.json"


def attempts_file(path):
    return path.with_name(path.name.replace(".json", ".attempts"))


def write_corrupt(app, reference=CORRUPT, folder=None):
    """A record cut short, as a disk that lost its last blocks leaves it."""
    path = (folder or spool_folder(app)) / f"{reference}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'{{"reference": "{reference}", "name": "Half a wri')
    return path


def age_file(path, age):
    moment = time.time() - age.total_seconds()
    os.utime(path, (moment, moment), follow_symlinks=False)


def drain(app):
    with app.app_context():
        moved, problems = spool.drain()
        db.session.remove()
    return moved, problems


def entries_named(folder, suffix):
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(suffix))


# Each file on its own


def test_odd_entries_in_the_spool_never_stop_the_good_leads_or_the_mail(
    make_app, smtp_server, caplog
):
    app = make_app(**smtp_server.config, **NOTIFY)
    good = sorted(keep(app) for _ in range(2))
    folder = spool_folder(app)
    odd = {
        "LC-0000-0001": "Is a directory",
        "LC-0000-0002": "not a regular file",
        "LC-0000-0003": "a symbolic link, not a file",
        CORRUPT: "not a complete lead record",
        "LC-0000-0005": "unknown fields: colour",
        "LC-0000-0006": "not valid Unicode: message",
    }
    (folder / "LC-0000-0001.json").mkdir()
    os.mkfifo(folder / "LC-0000-0002.json")  # a plain read would wait for a writer forever
    (folder / "LC-0000-0003.json").symlink_to(folder / "elsewhere.json")
    write_corrupt(app)
    (folder / "LC-0000-0005.json").write_text('{"reference": "LC-0000-0005", "colour": "blue"}')
    # JSON may hold a lone surrogate; no database can store it.
    (folder / "LC-0000-0006.json").write_text('{"reference": "LC-0000-0006", "message": "\\ud800"}')

    result = deliver(app.test_cli_runner())

    assert sorted(lead.reference for lead in stored_leads(app)) == good
    assert len(smtp_server.wait_for(2)) == 2
    for reference, reason in odd.items():
        assert f"{folder / reference}.json: {reason}" in result.output
        assert os.path.lexists(folder / f"{reference}.json")
    assert result.output.count("(attempt 1 of 3)") == len(odd)
    assert not any(spool_file(app, reference).exists() for reference in good)
    assert "Ada Lovelace" not in caplog.text


def test_a_spool_folder_that_cannot_be_listed_does_not_stop_the_mail(
    make_app, tmp_path, smtp_server, caplog
):
    not_a_folder = tmp_path / "spool-is-a-file"
    not_a_folder.write_text("")
    app = make_app(**smtp_server.config, **NOTIFY, LEAD_SPOOL_DIR=str(not_a_folder))
    store_with_notification(app)

    with app.app_context():
        report = delivery.deliver_due()

    assert report.sent == 1
    assert report.errors == [f"the spool {not_a_folder} cannot be read (Not a directory)"]
    assert len(smtp_server.wait_for(1)) == 1
    assert "The spool cannot be read" in caplog.text


def test_leftover_temporary_files_are_deleted_once_old(app):
    folder = spool_folder(app)
    folder.mkdir()
    old, fresh = folder / "tmpold.tmp", folder / "tmpfresh.tmp"
    for path in (old, fresh):
        path.write_text('{"name": "Ada Lov')  # a crash during keep()
    age_file(old, timedelta(hours=1, minutes=1))

    drain(app)

    assert not old.exists()
    assert fresh.exists()


# The database's answer: "not now" for every file, or "not this record"


def test_a_read_only_database_keeps_every_file_uncounted_then_stores_each_lead_once(
    make_app, database_uri, smtp_server
):
    app = make_app()
    references = sorted(keep(app) for _ in range(3))
    folder = spool_folder(app)

    with read_only(database_uri) as read_only_uri:
        standby = make_app(SQLALCHEMY_DATABASE_URI=read_only_uri)
        for _ in range(spool.QUARANTINE_AFTER + 1):
            moved, problems = drain(standby)
            assert moved == []
            assert len(problems) == 1
            assert "the database cannot take kept leads now" in problems[0]

    assert entries_named(folder, ".json") == [f"{reference}.json" for reference in references]
    assert entries_named(folder, ".attempts") == []
    writable = make_app(**smtp_server.config, **NOTIFY)
    with writable.app_context():
        assert sorted(delivery.deliver_due().stored) == references
        assert delivery.deliver_due().stored == []
    assert sorted(lead.reference for lead in stored_leads(writable)) == references
    assert len(smtp_server.wait_for(3)) == 3


MIGRATION_AHEAD = {
    "sqlite": (
        [
            "CREATE TRIGGER needs_a_later_migration BEFORE INSERT ON leads "
            "BEGIN INSERT INTO table_of_a_later_migration VALUES (1); END"
        ],
        ["DROP TRIGGER needs_a_later_migration"],
    ),
    "postgresql": (
        [
            "CREATE FUNCTION needs_a_later_migration() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO table_of_a_later_migration VALUES (1); RETURN NEW; END $$",
            "CREATE TRIGGER needs_a_later_migration BEFORE INSERT ON leads "
            "FOR EACH ROW EXECUTE FUNCTION needs_a_later_migration()",
        ],
        [
            "DROP TRIGGER needs_a_later_migration ON leads",
            "DROP FUNCTION needs_a_later_migration()",
        ],
    ),
}


@contextmanager
def lead_inserts_failing(database_uri):
    """Inside, inserting a lead needs a table that a later migration creates; the outbox
    works as usual."""
    create, drop = MIGRATION_AHEAD[sa.make_url(database_uri).get_backend_name()]
    engine = sa.create_engine(database_uri)

    def run(statements):
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)

    run(create)
    try:
        yield
    finally:
        run(drop)
        engine.dispose()


def test_while_the_database_cannot_take_kept_leads_the_mail_of_stored_ones_still_goes(
    make_app, database_uri, smtp_server
):
    app = make_app(**smtp_server.config, **NOTIFY)
    store_with_notification(app)
    references = sorted(keep(app) for _ in range(2))

    with lead_inserts_failing(database_uri), app.app_context():
        report = delivery.deliver_due()
        db.session.remove()

    assert report.stored == [] and report.sent == 1
    assert len(report.errors) == 1
    assert "the database cannot take kept leads now" in report.errors[0]
    assert len(smtp_server.wait_for(1)) == 1
    folder = spool_folder(app)
    assert entries_named(folder, ".json") == [f"{reference}.json" for reference in references]
    assert entries_named(folder, ".attempts") == []

    with app.app_context():
        assert sorted(delivery.deliver_due().stored) == references
    assert len(smtp_server.wait_for(3)) == 3


def test_a_record_the_database_refuses_is_counted_and_the_others_move_in(make_app):
    app = make_app()
    refused = keep(app, email=None)  # NOT NULL: refused by either database
    good = keep(app)

    moved, problems = drain(app)

    assert moved == [good]
    (problem,) = problems
    assert problem.startswith(f"{spool_file(app, refused)}: the database refused it (")
    assert problem.endswith("(attempt 1 of 3)")
    counted = json.loads(attempts_file(spool_file(app, refused)).read_text())
    assert counted["attempts"] == 1


def test_an_attempt_is_counted_at_most_once_a_minute(make_app):
    """Workers try every second: a fault that passes within minutes does not use every
    attempt up."""
    app = make_app()
    refused = spool_file(app, keep(app, email=None))

    problems = [drain(app)[1] for _ in range(3)]

    assert problems[0][0].endswith("(attempt 1 of 3)")
    assert [
        problem[0].endswith("(attempt 1 of 3 counted already)") for problem in problems[1:]
    ] == [True] * 2
    assert json.loads(attempts_file(refused).read_text())["attempts"] == 1
    a_minute_passes(spool_folder(app))
    assert drain(app)[1][0].endswith("(attempt 2 of 3)")


# Quarantine


@pytest.fixture
def quarantined(make_app, caplog):
    """A record the database refuses and a corrupt file, each tried by a new worker until
    quarantined; returns the refused one's reference."""
    refused = keep(make_app(), email=None)
    write_corrupt(make_app())
    for _ in range(spool.QUARANTINE_AFTER):
        drain(make_app())  # a restart between runs: the count is on disk
        a_minute_passes(spool_folder(make_app()))
    return refused


def a_minute_passes(folder):
    """Attempts are counted at most once a minute: make the last count a minute old."""
    for counted in folder.glob("*.attempts"):
        age_file(counted, spool.ATTEMPT_SPACING)


def test_a_file_refused_three_times_is_quarantined_and_named_in_the_log(app, quarantined, caplog):
    folder = spool_folder(app)
    logged = "\n".join(record.getMessage() for record in caplog.get_records("setup"))
    for reference in (quarantined, CORRUPT):
        assert in_quarantine(app, reference).exists()
        assert json.loads(attempts_file(in_quarantine(app, reference)).read_text())["attempts"] == 3
        assert f"Kept lead {reference}.json quarantined after 3 attempts" in logged
    assert entries_named(folder, ".json") == []
    assert entries_named(folder, ".attempts") == []
    assert "Ada Lovelace" not in logged and "ada@example.org" not in logged

    caplog.clear()
    assert drain(app) == ([], [])
    assert caplog.text == ""


def test_a_quarantined_lead_still_has_its_thank_you_page(app, client, quarantined):
    response = client.get(f"/contact/thanks/{quarantined}")

    assert response.status_code == 200
    assert quarantined in response.text


def test_a_pipe_named_like_a_lead_gets_no_thank_you_page_and_holds_nothing(app, client):
    folder = spool_folder(app)
    folder.mkdir()
    os.mkfifo(folder / "LC-0000-0002.json")

    assert client.get("/contact/thanks/LC-0000-0002").status_code == 404


# flask leads spool


def spool_command(app, *args):
    return app.test_cli_runner().invoke(args=["leads", "spool", *args])


def test_list_shows_kept_and_quarantined_leads_with_their_age_and_reason(app, quarantined):
    kept = keep(app)
    age_file(spool_file(app, kept), timedelta(hours=2, minutes=5))

    result = spool_command(app, "list")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{kept:14} {'kept':11} 2 hours ago"
    assert lines[1].startswith(f"{CORRUPT:14} quarantined just now         3 attempts: not a")
    assert lines[2].startswith(f"{quarantined:14} quarantined just now         3 attempts: the")
    assert "the database refused it (" in lines[2]
    assert "flask leads spool retry REFERENCE" in lines[3]


def test_list_of_an_empty_spool(app):
    result = spool_command(app, "list")

    assert result.exit_code == 0
    assert result.output == f"No lead is kept in {spool_folder(app)}.\n"


def test_export_prints_a_record_to_fix_and_retry_gives_it_back(app, quarantined):
    exported = spool_command(app, "export", quarantined.lower())
    assert exported.exit_code == 0, exported.output
    record = json.loads(exported.stdout)
    assert (record["reference"], record["name"]) == (quarantined, "Ada Lovelace")
    assert "email" not in record

    # A person adds what the database asked for, then gives the lead back.
    record["email"] = "ada@example.org"
    in_quarantine(app, quarantined).write_text(json.dumps(record))
    retried = spool_command(app, "retry", quarantined)
    assert retried.exit_code == 0, retried.output
    assert f"1 lead back in the spool: {quarantined}." in retried.output
    assert not attempts_file(spool_file(app, quarantined)).exists()

    assert drain(app) == ([quarantined], [])
    assert [lead.email for lead in stored_leads(app)] == ["ada@example.org"]


def test_export_of_a_file_that_is_no_json_prints_it_as_it_is(app, quarantined):
    result = spool_command(app, "export", CORRUPT)

    assert result.exit_code == 0
    assert result.stdout == f'{{"reference": "{CORRUPT}", "name": "Half a wri\n'
    assert "is not valid JSON" in result.stderr


def test_retry_all_gives_every_quarantined_lead_three_more_attempts(app, quarantined):
    result = spool_command(app, "retry", "--all")

    assert result.exit_code == 0, result.output
    assert f"2 leads back in the spool: {CORRUPT}, {quarantined}." in result.output
    assert entries_named(spool_folder(app), ".json") == [f"{CORRUPT}.json", f"{quarantined}.json"]
    assert entries_named(spool_folder(app) / spool.QUARANTINE, "") == []
    assert all("(attempt 1 of 3)" in problem for problem in drain(app)[1])


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["export", "LC-ZZZZ-ZZZZ"], 1, "No kept or quarantined lead has the reference"),
        (["retry", "LC-ZZZZ-ZZZZ"], 1, "No quarantined lead has the reference LC-ZZZZ-ZZZZ"),
        (["export", "nonsense"], 2, "'nonsense' is not a lead reference such as LC-7K4M-Q9XP"),
        (["retry", "LC-1"], 2, "'LC-1' is not a lead reference"),
        (["retry"], 2, "Give either a REFERENCE or --all."),
        (["retry", "LC-ZZZZ-ZZZZ", "--all"], 2, "Give either a REFERENCE or --all."),
    ],
)
def test_spool_commands_refuse_unknown_references_plainly(app, args, code, message):
    result = spool_command(app, *args)

    assert result.exit_code == code
    assert message in result.output


def test_retry_all_with_nothing_quarantined(app):
    result = spool_command(app, "retry", "--all")

    assert result.exit_code == 0
    assert result.output == "No lead is quarantined.\n"


# The dashboard


def test_admins_see_kept_and_quarantined_leads_on_the_dashboard(app, client, quarantined, admin):
    kept = keep(app)
    age_file(spool_file(app, kept), timedelta(minutes=20))

    page = client.get("/staff/").text

    assert "2 leads are quarantined" in page
    assert "1 lead is kept in the spool until the database takes it" in page
    assert "the oldest was kept <time" in page and "20 minutes ago" in page
    assert "flask leads spool list" in page


def test_editors_are_not_shown_the_spool(app, client, quarantined, editor):
    assert "quarantined" not in client.get("/staff/").text


def test_an_empty_spool_adds_nothing_to_the_dashboard(client, admin):
    assert "flask leads spool" not in client.get("/staff/").text


# Purge and erasure


def test_purge_deletes_old_kept_and_quarantined_leads(app, runner, quarantined):
    old_kept = keep(app, age=timedelta(days=400))
    fresh = keep(app)
    old_record = in_quarantine(app, quarantined)
    record = json.loads(old_record.read_text())
    record["created_at"] = (utcnow() - timedelta(days=400)).isoformat()
    old_record.write_text(json.dumps(record))
    age_file(in_quarantine(app, CORRUPT), timedelta(days=400))  # unreadable: by its file's age

    dry = runner.invoke(args=["leads", "purge", "--older-than", "365", "--dry-run"])
    assert "and 3 kept leads in the spool would be purged" in dry.output
    assert in_quarantine(app, CORRUPT).exists()

    result = runner.invoke(args=["leads", "purge", "--older-than", "365"])

    assert result.exit_code == 0, result.output
    assert "Purged 0 leads received before" in result.output
    assert "and 3 kept leads in the spool." in result.output
    assert entries_named(spool_folder(app), ".json") == [f"{fresh}.json"]
    assert entries_named(spool_folder(app) / spool.QUARANTINE, "") == []
    assert not spool_file(app, old_kept).exists()


def test_purge_names_a_spool_it_cannot_read_and_purges_the_database(make_app, tmp_path):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    app = make_app(LEAD_SPOOL_DIR=str(not_a_folder))

    result = app.test_cli_runner().invoke(args=["leads", "purge", "--older-than", "365"])

    assert result.exit_code == 1
    assert "Purged 0 leads received before" in result.stdout
    assert result.stderr == f"{not_a_folder} cannot be read: Not a directory.\n"


def test_a_lead_whose_spool_copy_cannot_be_deleted_is_not_erased(app, client, make_lead, admin):
    """Left behind, the copy would be stored again by the next drain: the erasure stops."""
    lead = make_lead()
    stuck = spool_file(app, lead.reference)
    (stuck / "something").mkdir(parents=True)  # a folder where the file would be

    response = client.post(
        f"/staff/leads/{lead.reference}/erase",
        data={"csrf_token": csrf_token(client, "/staff/leads/"), "confirm": lead.reference},
        follow_redirects=True,
    )

    assert response.status_code == 200
    assert "cannot be deleted, so the lead has not been erased" in response.text
    assert [kept.reference for kept in stored_leads(app)] == [lead.reference]


def test_erasing_a_lead_deletes_its_copies_in_the_spool_too(app, client, make_lead, admin):
    lead = make_lead()
    # A drain that stored it but could not delete its file, and a copy put in quarantine.
    keep(app, reference=lead.reference)
    quarantine = spool_folder(app) / spool.QUARANTINE
    quarantine.mkdir()
    write_corrupt(app, lead.reference, folder=quarantine)
    attempts_file(in_quarantine(app, lead.reference)).write_text('{"attempts": 3}')

    response = client.post(
        f"/staff/leads/{lead.reference}/erase",
        data={"csrf_token": csrf_token(client, "/staff/leads/"), "confirm": lead.reference},
    )

    assert response.status_code == 303
    assert list(spool_folder(app).rglob("*")) == [quarantine]
    assert drain(app) == ([], [])
    assert stored_leads(app) == []
