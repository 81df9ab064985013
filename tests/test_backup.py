"""`flask backup create|verify|restore`: one archive of the database, covers and kept leads."""

import hashlib
import io
import json
import os
import re
import stat
import tarfile
import tempfile
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade
from PIL import Image

from app.backup import databases, schema
from app.extensions import db
from app.leads import spool
from app.leads.models import Lead, new_reference
from app.posts.uploads import store_cover
from tests.conftest import STAFF_PASSWORD, csrf_token, deliver, reference_of


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


def kept_lead(name="Kept While Down"):
    return Lead(
        reference=new_reference(),
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
    waits in the outbox, one kept in the spool and one the database refused (quarantined)."""
    make_user("admin", email="grace@agency.test", name="Grace")
    make_post(cover_image=store_cover(png()), cover_alt="Battery cells")
    visitor = app.test_client()
    sent = [reference_of(post_lead(visitor, name=f"Sent {number}")) for number in range(2)]
    smtp_server.configure(app)
    deliver(runner)
    waiting = reference_of(post_lead(visitor, name="Waiting"))
    kept, refused = kept_lead(), kept_lead("Refused By The Database")
    spool.keep(kept)
    spool.keep(refused)
    spool.quarantine(spool.folder() / f"{refused.reference}.json", 3, "refused (DataError)")
    db.session.expire_all()
    return {
        "sent": sent,
        "waiting": waiting,
        "kept": kept.reference,
        "quarantined": refused.reference,
    }


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
    with app.app_context():
        quarantined = files(spool.quarantine_folder())
    with restored_site.app_context():
        assert files(spool.quarantine_folder()) == quarantined
    assert f"{site_with_everything['quarantined']}.json" in quarantined


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


def members_of(path):
    """The archive's members with their bytes, manifest.json first."""
    with tarfile.open(path) as archive:
        return [[member, archive.extractfile(member).read()] for member in archive]


def write_members(path, members):
    """Write an archive of these members; one without bytes (a link, a folder) as it is."""
    with tarfile.open(path, "w:gz") as archive:
        for member, data in members:
            if data is None:
                archive.addfile(member)
            else:
                member.size = len(data)
                archive.addfile(member, io.BytesIO(data))


def rewrite(path, change_manifest=None, change_member=None):
    """Write the archive again with its manifest or its database's bytes changed."""
    members = members_of(path)
    for member in members:
        if member[0].name == "manifest.json" and change_manifest:
            manifest = json.loads(member[1])
            change_manifest(manifest)
            member[1] = json.dumps(manifest).encode()
        elif change_member and member[0].name.startswith("database."):
            member[1] = change_member(member[1])
    write_members(path, members)


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


@pytest.fixture
def around(tmp_path, monkeypatch):
    """Staging folders are made in around/temporary/, so that whatever an archive could write
    beside or above its own ('../../x' lands in around/) is under the test's folder, where
    `tree` sees it. around/victim is a file for links to point at."""
    (tmp_path / "around" / "temporary").mkdir(parents=True)
    (tmp_path / "around" / "victim").write_bytes(b"untouched")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "around" / "temporary"))
    return tmp_path / "around"


def tree(folder):
    """Everything under the folder: each file's bytes and inode (a replaced file has a new
    one), each link's target, each folder."""

    def what(path):
        if path.is_symlink():
            return ("link", os.readlink(path))
        if path.is_dir():
            return ("folder",)
        return ("file", path.read_bytes(), path.stat().st_ino)

    return {path.relative_to(folder): what(path) for path in Path(folder).rglob("*")}


def assert_refused_changing_nothing(app, path, complaint, around):
    """verify and restore --force both refuse the archive with a clear error (no traceback),
    and nothing changes: no file or folder under the test's folder, no row."""
    files_before, rows_before = tree(around.parent), rows(app)
    for command in (["verify"], ["restore", "--force"]):
        result = invoke(app, "backup", *command, str(path))
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert complaint in result.output
    assert tree(around.parent) == files_before
    assert rows(app) == rows_before


def add_named(members, member, data=None):
    """Add a member, listed in the manifest with its true size and SHA-256."""
    manifest = json.loads(members[0][1])
    manifest["files"][member.name] = entry_of(data or b"")
    members[0][1] = json.dumps(manifest).encode()
    members.append([member, data])


def entry_of(data):
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def special(name, kind, target=""):
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, target
    return member


def a_path_up_out_of_the_staging_folder(members, around):
    add_named(members, tarfile.TarInfo("../../escaped"), b"escaped")


def an_absolute_path(members, around):
    add_named(members, tarfile.TarInfo(str(around / "absolute")), b"escaped")


def a_symbolic_link(members, around):
    add_named(members, special("uploads/linked.png", tarfile.SYMTYPE, str(around)))


def a_hard_link(members, around):
    add_named(members, special("spool/LC-HARD-LINK.json", tarfile.LNKTYPE, str(around / "victim")))


def a_manifest_that_is_a_folder(members, around):
    members[0] = [special("manifest.json", tarfile.DIRTYPE), None]


def an_empty_folder_among_the_covers(members, around):
    members.append([special("uploads/empty", tarfile.DIRTYPE), None])


def a_member_twice(members, around):
    name = next(member.name for member, _ in members if member.name.startswith("spool/"))
    members.append([tarfile.TarInfo(name), b'{"reference": "LC-0000-0000"}'])


def a_member_its_manifest_does_not_name(members, around):
    members.append([tarfile.TarInfo("uploads/extra.png"), png()])


def a_cover_unlike_its_manifest(members, around):
    cover = next(member for member in members if member[0].name.startswith("uploads/"))
    cover[1] = garbled(cover[1])


@pytest.mark.parametrize(
    ("craft", "complaint"),
    [
        (a_path_up_out_of_the_staging_folder, "'../../escaped', which is not a name a backup's"),
        (an_absolute_path, "/around/absolute', which is not a name a backup's file has"),
        (a_symbolic_link, "'uploads/linked.png' is a symbolic link to"),
        (a_hard_link, "'spool/LC-HARD-LINK.json' is a hard link to"),
        (a_manifest_that_is_a_folder, "'manifest.json' is a directory, not a regular file"),
        (an_empty_folder_among_the_covers, "'uploads/empty' is a directory, not a regular file"),
        (a_member_twice, ".json' twice"),
        (a_member_its_manifest_does_not_name, "'uploads/extra.png', which its manifest does not"),
        (a_cover_unlike_its_manifest, "is damaged: uploads/"),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_a_crafted_archive_is_refused_before_it_writes_or_changes_anything(
    app, site_with_everything, backups, around, craft, complaint
):
    path, _ = create_backup(app, backups)
    members = members_of(path)
    craft(members, around)
    crafted = backups / "crafted.tar.gz"
    write_members(crafted, members)

    assert_refused_changing_nothing(app, crafted, complaint, around)


ENTRY = {"bytes": 1, "sha256": "0" * 64}


def without(key):
    return lambda manifest: {name: value for name, value in manifest.items() if name != key}


def changed(**fields):
    return lambda manifest: {**manifest, **fields}


def changed_database(**fields):
    return lambda manifest: {**manifest, "database": {**manifest["database"], **fields}}


def with_file(name, entry):
    return lambda manifest: {**manifest, "files": {**manifest["files"], name: entry}}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda manifest: b'{"format": 1, "files": ', "its manifest.json is not JSON"),
        (lambda manifest: [manifest], "its manifest is not a JSON object"),
        (changed(format=2), "its manifest is of format 2, and this version of the site reads"),
        (changed(created_at="yesterday"), "its manifest's created_at is not a date and time"),
        (changed(created_at="2026-12-01T10:00:00"), "its manifest's created_at is not a date"),
        (changed(created_at="0001-01-01T00:00:00+14:00"), "its manifest's created_at is not a"),
        (without("files"), "its manifest's files is missing or not an object"),
        (changed(files=["uploads/x.png"]), "its manifest's files is missing or not an object"),
        (without("database"), "its manifest's database is missing or not an object"),
        (changed_database(file=7), "its manifest's database.file is missing or not text"),
        (changed_database(revision=None), "its manifest's database.revision is missing or"),
        (changed_database(file="other.db"), "database.file 'other.db' is not one of its files"),
        (changed_database(rows={"leads": "3"}), "database.rows are not all counts of rows"),
        (with_file("uploads/.partial", ENTRY), "names 'uploads/.partial', which is not a file"),
        (with_file("spool/../escaped", ENTRY), "names 'spool/../escaped', which is not a file"),
        (with_file("uploads/deeper/x.png", ENTRY), "names 'uploads/deeper/x.png', which is not"),
        (with_file("notes.txt", ENTRY), "names 'notes.txt', which is not a file a backup holds"),
        (with_file("uploads/x.png", {"sha256": "0" * 64}), "gives 'uploads/x.png' no size in"),
        (with_file("uploads/x.png", {**ENTRY, "bytes": "1"}), "gives 'uploads/x.png' no size"),
        (with_file("uploads/x.png", {**ENTRY, "sha256": 12}), "gives 'uploads/x.png' no size"),
        (with_file("uploads/x.png", 12), "gives 'uploads/x.png' no size in bytes and SHA-256"),
    ],
)
def test_a_malformed_manifest_is_refused_with_what_is_wrong(
    app, site_with_everything, backups, around, change, complaint
):
    path, _ = create_backup(app, backups)
    members = members_of(path)
    replaced = change(json.loads(members[0][1]))
    members[0][1] = replaced if isinstance(replaced, bytes) else json.dumps(replaced).encode()
    write_members(path, members)

    assert_refused_changing_nothing(app, path, complaint, around)


def test_a_lead_the_worker_moves_in_just_after_the_snapshot_is_in_the_archive(
    app, site_with_everything, backups, monkeypatch
):
    """The spool is copied before the database: a lead moved between the two is in the copy
    of the spool (and may be in the database's too: its reference makes that harmless)."""
    kind = type(databases.current())
    dump = kind.dump

    def dump_then_drain(database, destination):
        found = dump(database, destination)
        assert spool.drain()[0] == [site_with_everything["kept"]]
        return found

    monkeypatch.setattr(kind, "dump", dump_then_drain)

    path, _ = create_backup(app, backups)

    assert f"spool/{site_with_everything['kept']}.json" in manifest_of(path)["files"]
    assert not list(spool.folder().glob("*.json"))


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
    assert "1 uploaded cover, 1 kept lead, 1 quarantined lead (" in result.output
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
