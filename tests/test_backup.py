"""`flask backup create|verify|restore`: one archive of the database, covers and kept leads."""

import hashlib
import io
import json
import re
import stat
import tarfile
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade
from PIL import Image

from app.backup import schema
from app.extensions import db
from app.leads import spool
from app.leads.models import Lead
from app.posts.uploads import store_cover
from tests.conftest import STAFF_PASSWORD, csrf_token, deliver


@pytest.fixture
def app_config(app_config, tmp_path):
    return {
        **app_config,
        "UPLOAD_FOLDER": str(tmp_path / "uploads"),
        "CONTACT_RATE_LIMIT": "1000 per minute",
        "LEADS_NOTIFY_TO": ["sales@agency.test"],
    }


@pytest.fixture
def empty_database(database_uri, tmp_path):
    """The URL of a database of the site's kind that holds nothing: no tables, no rows."""
    if database_uri.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    admin = sa.create_engine(database_uri, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    name = f"restored_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def restored_site(make_app, empty_database, tmp_path):
    """A second site, on the empty database and with folders of its own, to restore into."""
    return make_app(
        SQLALCHEMY_DATABASE_URI=empty_database,
        UPLOAD_FOLDER=str(tmp_path / "restored-uploads"),
        LEAD_SPOOL_DIR=str(tmp_path / "restored-spool"),
    )


@pytest.fixture
def backups(tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    return folder


def png():
    buffer = io.BytesIO()
    Image.effect_noise((32, 16), 80).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def reference_of(response):
    assert response.status_code == 303, response.text
    return response.location.rsplit("/", 1)[1]


def kept_lead(name="Kept While Down"):
    return Lead(
        name=name,
        email="kept@client.example",
        message="Sent while the database was away.",
        consent_text="I agree.",
        consent_version="test",
    )


def invoke(app, *args):
    """Run a flask command on this app (with no context pushed, it would use the test's)."""
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args))


def create_backup(app, folder):
    result = invoke(app, "backup", "create", str(folder))
    assert result.exit_code == 0, result.output
    (path,) = folder.glob("backup-*.tar.gz")
    return path, result


def manifest_of(path):
    with tarfile.open(path) as archive:
        return json.load(archive.extractfile("manifest.json"))


def rows(app):
    """Every row of every table, as sets of tuples."""
    with app.app_context():
        db.session.remove()
        with db.engine.connect() as connection:
            return {
                table.name: set(connection.execute(sa.select(table)).all())
                for table in db.metadata.sorted_tables
            }


def files(folder):
    return {path.name: path.read_bytes() for path in Path(folder).glob("*") if path.is_file()}


class Visitors:
    """Visitors sending the form from another thread, as they would while a backup runs."""

    def __init__(self, app, post_lead):
        self.app, self.post_lead = app, post_lead
        self.references, self.failures = [], []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        client = self.app.test_client()
        while not self.stopping.is_set() and len(self.references) < 500:
            response = self.post_lead(client)
            if response.status_code == 303:
                self.references.append(response.location.rsplit("/", 1)[1])
            else:
                self.failures.append(response.status_code)

    def wait_for(self, count):
        while len(self.references) < count and self.thread.is_alive():
            self.stopping.wait(0.01)
        assert len(self.references) >= count, self.failures


@contextmanager
def site_running(app, post_lead):
    visitors = Visitors(app, post_lead)
    visitors.thread.start()
    try:
        yield visitors
    finally:
        visitors.stopping.set()
        visitors.thread.join(timeout=30)


@pytest.fixture
def site_with_everything(app, runner, make_user, make_post, post_lead, smtp_server):
    """Staff, a post with an uploaded cover, leads whose emails went out, one whose email
    waits in the outbox, and one kept in the spool."""
    make_user("admin", email="grace@agency.test", name="Grace")
    make_post(cover_image=store_cover(png()), cover_alt="Battery cells")
    visitor = app.test_client()
    sent = [reference_of(post_lead(visitor, name=f"Sent {number}")) for number in range(2)]
    smtp_server.configure(app)
    deliver(runner)
    waiting = reference_of(post_lead(visitor, name="Waiting"))
    kept = kept_lead()
    spool.keep(kept)
    db.session.expire_all()
    return {"sent": sent, "waiting": waiting, "kept": kept.reference}


def test_a_backup_taken_while_the_site_runs_restores_every_row_and_file(
    app, make_app, site_with_everything, post_lead, restored_site, backups
):
    before = rows(app)
    with site_running(make_app(), post_lead) as visitors:
        visitors.wait_for(3)
        path, result = create_backup(app, backups)
        visitors.wait_for(len(visitors.references) + 3)
    after = rows(app)
    manifest = manifest_of(path)
    assert "1 uploaded cover," in result.output and "Backed up to" in result.output

    result = invoke(restored_site, "backup", "restore", str(path))

    assert result.exit_code == 0, result.output
    restored = rows(restored_site)
    assert {name: len(found) for name, found in restored.items()} == manifest["database"]["rows"]
    for table, found in restored.items():
        assert before[table] <= found <= after[table], table
    references = {row.reference for row in restored["leads"]}
    assert set(site_with_everything["sent"]) | {site_with_everything["waiting"]} <= references
    assert len(restored["leads"]) > len(before["leads"])  # the visitors' leads up to the backup
    statuses = {row.status for row in restored["outbox_messages"]}
    assert {"sent", "pending"} <= statuses
    assert files(restored_site.config["UPLOAD_FOLDER"]) == files(app.config["UPLOAD_FOLDER"])
    kept = f"{site_with_everything['kept']}.json"
    assert files(restored_site.config["LEAD_SPOOL_DIR"]).keys() == {kept}


def test_the_restored_site_logs_staff_in_shows_covers_and_takes_new_leads(
    app, site_with_everything, post_lead, restored_site, backups
):
    path, _ = create_backup(app, backups)
    assert invoke(restored_site, "backup", "restore", str(path)).exit_code == 0
    staff = restored_site.test_client()

    response = staff.post(
        "/staff/login",
        data={
            "email": "grace@agency.test",
            "password": STAFF_PASSWORD,
            "csrf_token": csrf_token(staff),
        },
    )
    assert response.status_code == 303
    reference = reference_of(post_lead(restored_site.test_client(), name="After The Restore"))
    inbox = staff.get("/staff/leads/").text
    assert "After The Restore" in inbox and "Waiting" in inbox
    with restored_site.app_context():
        cover = db.session.scalar(sa.text("SELECT cover_image FROM posts"))
        assert reference.startswith("LC-")
    with staff.get(f"/{cover}") as response:
        assert response.status_code == 200


def test_restore_refuses_a_database_that_holds_data_unless_forced(
    app, site_with_everything, restored_site, backups
):
    path, _ = create_backup(app, backups)
    with restored_site.app_context():
        upgrade()
        db.session.add(Lead(**vars_of_lead("Only In The Target")))
        db.session.commit()

    refused = invoke(restored_site, "backup", "restore", str(path))

    assert refused.exit_code == 1
    assert "already holds data" in refused.output and "--force" in refused.output
    assert names_in(restored_site) == {"Only In The Target"}
    assert not Path(restored_site.config["UPLOAD_FOLDER"]).exists()

    forced = invoke(restored_site, "backup", "restore", "--force", str(path))

    assert forced.exit_code == 0, forced.output
    assert names_in(restored_site) == names_in(app)


def vars_of_lead(name):
    return {
        "name": name,
        "email": "target@client.example",
        "message": "Already here.",
        "consent_text": "I agree.",
        "consent_version": "test",
    }


def names_in(app):
    with app.app_context():
        db.session.remove()
        return set(db.session.scalars(sa.select(Lead.name)))


def tables_in(app):
    with app.app_context():
        return sa.inspect(db.engine).get_table_names()


def rewrite(path, change_manifest=None, change_member=None):
    """Write the archive again with its manifest or one member's bytes changed."""
    with tarfile.open(path) as archive:
        members = [(member, archive.extractfile(member).read()) for member in archive]
    with tarfile.open(path, "w:gz") as archive:
        for member, data in members:
            if member.name == "manifest.json" and change_manifest:
                manifest = json.loads(data)
                change_manifest(manifest)
                data = json.dumps(manifest).encode()
            elif change_member and member.name.startswith("database."):
                data = change_member(data)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))


def garbled(data):
    return data[:100] + bytes(255 - byte for byte in data[100:])


def test_a_damaged_archive_is_refused_before_anything_changes(
    app, site_with_everything, restored_site, backups
):
    path, _ = create_backup(app, backups)
    truncated = backups / "truncated.tar.gz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    altered = backups / "altered.tar.gz"
    altered.write_bytes(path.read_bytes())
    rewrite(altered, change_member=garbled)

    for damaged, complaint in [
        (truncated, "is not a complete backup archive"),
        (altered, "is damaged: database."),
        (backups / "missing.tar.gz", "There is no archive at"),
    ]:
        verified = invoke(app, "backup", "verify", str(damaged))
        restored = invoke(restored_site, "backup", "restore", str(damaged))
        assert verified.exit_code == restored.exit_code == 1
        assert complaint in verified.output and complaint in restored.output

    assert tables_in(restored_site) == []
    assert not Path(restored_site.config["UPLOAD_FOLDER"]).exists()


def test_a_database_that_fails_to_load_leaves_the_target_as_it_was(
    app, site_with_everything, restored_site, backups
):
    """The archive's checksums match but its database cannot be read: nothing is replaced."""
    path, _ = create_backup(app, backups)

    def garble_and_sign(manifest):
        name = manifest["database"]["file"]
        manifest["files"][name]["sha256"] = hashlib.sha256(garbled(original[name])).hexdigest()

    with tarfile.open(path) as archive:
        original = {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}
    rewrite(path, change_manifest=garble_and_sign, change_member=garbled)
    with restored_site.app_context():
        upgrade()
        db.session.add(Lead(**vars_of_lead("Only In The Target")))
        db.session.commit()

    result = invoke(restored_site, "backup", "restore", "--force", str(path))

    assert result.exit_code == 1
    assert "The site's database was not changed." in result.output
    assert names_in(restored_site) == {"Only In The Target"}
    assert files(restored_site.config["LEAD_SPOOL_DIR"]) == {}


def test_an_archive_from_a_newer_schema_or_another_database_is_refused(
    app, site_with_everything, restored_site, backups
):
    path, _ = create_backup(app, backups)
    newer = backups / "newer.tar.gz"
    newer.write_bytes(path.read_bytes())
    rewrite(newer, lambda manifest: manifest["database"].update(revision="9999_from_the_future"))
    other = backups / "other.tar.gz"
    other.write_bytes(path.read_bytes())
    kind = manifest_of(path)["database"]["kind"]
    other_kind = "postgresql" if kind == "sqlite" else "sqlite"
    rewrite(other, lambda manifest: manifest["database"].update(kind=other_kind))

    too_new = invoke(restored_site, "backup", "restore", str(newer))
    wrong_kind = invoke(restored_site, "backup", "restore", str(other))

    assert too_new.exit_code == wrong_kind.exit_code == 1
    assert "revision 9999_from_the_future, which this version of the site does not know" in (
        too_new.output
    )
    assert f"holds a {other_kind} database" in wrong_kind.output
    assert tables_in(restored_site) == []


@pytest.fixture
def older_schema(app):
    """The site's database one migration back; put back to head afterwards for the next test."""
    db.session.remove()
    downgrade(revision="-1")
    yield
    db.session.remove()
    upgrade()


def test_an_archive_from_an_older_schema_is_migrated_on_restore(
    app, site_with_everything, older_schema, restored_site, backups
):
    path, _ = create_backup(app, backups)
    older = manifest_of(path)["database"]["revision"]
    assert older != schema.head()

    result = invoke(restored_site, "backup", "restore", str(path))

    assert result.exit_code == 0, result.output
    assert f"migrated from schema revision {older} to {schema.head()}." in result.output
    with restored_site.app_context(), db.engine.connect() as connection:
        assert schema.revision_of(connection) == schema.head()
    assert names_in(restored_site) == names_in(app)


def test_create_names_the_archive_in_a_folder_keeps_it_private_and_never_overwrites(
    app, site_with_everything, backups
):
    path, result = create_backup(app, backups)

    assert re.fullmatch(r"backup-\d{8}T\d{6}Z\.tar\.gz", path.name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in result.output and "3 leads" in result.output
    assert "1 kept lead (" in result.output and "1 uploaded cover," in result.output
    again = invoke(app, "backup", "create", str(path))
    nowhere = invoke(app, "backup", "create", str(backups / "no-such-folder" / "b.tar.gz"))
    assert again.exit_code == nowhere.exit_code == 1
    assert "exists already" in again.output and "There is no folder" in nowhere.output
    assert [p.name for p in backups.iterdir()] == [path.name]  # no partial file left


def test_verify_reads_the_archive_through_and_says_what_it_holds(
    app, site_with_everything, backups
):
    path, _ = create_backup(app, backups)

    result = invoke(app, "backup", "verify", str(path))

    assert result.exit_code == 0, result.output
    assert f"{path} is complete" in result.output
    assert "3 leads" in result.output and "1 post," in result.output
