"""The backup archive: a gzip'd tar with manifest.json first, then the database copy, the
uploaded covers (uploads/), the kept leads (spool/) and the quarantined ones (quarantine/). The
manifest holds the schema revision, the rows in each table and each file's size and SHA-256, so
a restore can check everything before it changes anything (app.backup.members reads it back).
"""

import hashlib
import io
import json
import os
import secrets
import shutil
import tarfile
import tempfile
from contextlib import suppress
from pathlib import Path

from flask import current_app

from app.backup import databases, schema
from app.backup.databases import BackupError
from app.backup.members import (
    FORMAT,
    MANIFEST,
    QUARANTINE,
    SPOOL,
    UPLOADS,
    is_plain_name,
    names_in,
    unpack,
)
from app.extensions import db
from app.leads import spool
from app.posts.uploads import upload_folder
from app.types import utcnow


def create(path):
    """Write a backup to `path` (a file, or a folder to name one in); return (path, manifest)."""
    database = databases.current()
    target = archive_path(Path(path))
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".backup-") as staging:
        staging = Path(staging)
        # Kept leads before the snapshot: one the worker moves into the database in between is
        # then in both copies (its unique reference makes the second harmless), never in
        # neither. The spool before its quarantine, the way the worker moves files. Each lead
        # goes with its count of attempts.
        kept = (f"*{spool.RECORD}", f"*{spool.ATTEMPTS}")
        copy_files(spool.folder(), staging / SPOOL, *kept)
        copy_files(spool.quarantine_folder(), staging / QUARANTINE, *kept)
        revision, rows = database.dump(staging / database.file_name)
        if revision is None:
            raise BackupError("The database has no schema yet: run `flask db upgrade` first.")
        copy_files(upload_folder(), staging / UPLOADS, "*")
        manifest = {
            "format": FORMAT,
            "created_at": utcnow().isoformat(),
            "site": current_app.config["SITE_URL"],
            "database": {
                "kind": database.kind,
                "file": database.file_name,
                "revision": revision,
                "rows": rows,
            },
            "files": checksums(staging),
        }
        write_archive(staging, manifest, target)
    return target, manifest


def archive_path(path):
    if path.is_dir():
        path = path / f"backup-{utcnow():%Y%m%dT%H%M%SZ}.tar.gz"
    if path.exists():
        raise BackupError(f"{path} exists already; backups never overwrite one another.")
    if not path.parent.is_dir():
        raise BackupError(f"There is no folder {path.parent}.")
    return path


def copy_files(source, destination, *patterns):
    """Copy the folder's finished files under plain names (a dot starts a partial upload's)."""
    destination.mkdir()
    for file in sorted({file for pattern in patterns for file in source.glob(pattern)}):
        if file.is_file() and is_plain_name(file.name):
            # A kept lead the worker moves in meanwhile is in the database snapshot after this.
            with suppress(FileNotFoundError):
                shutil.copy2(file, destination / file.name)


def checksums(staging):
    return {
        file.relative_to(staging).as_posix(): {"bytes": file.stat().st_size, "sha256": sha256(file)}
        for file in sorted(staging.rglob("*"))
        if file.is_file()
    }


def sha256(path):
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def write_archive(staging, manifest, target):
    """Written under a temporary name, fsync'd, then renamed: a crash leaves no half archive."""
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # personal data
    try:
        with os.fdopen(descriptor, "wb") as file:
            with tarfile.open(fileobj=file, mode="w:gz") as archive:
                add_bytes(archive, MANIFEST, json.dumps(manifest, indent=2).encode())
                for name in manifest["files"]:
                    archive.add(staging / name, arcname=name, recursive=False)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    spool.sync_folder(target.parent)


def add_bytes(archive, name, data):
    member = tarfile.TarInfo(name)
    member.size = len(data)
    member.mtime = int(utcnow().timestamp())
    member.mode = 0o600
    archive.addfile(member, io.BytesIO(data))


def verify(path):
    """Read the whole archive and check every file against the manifest; return the manifest."""
    with tempfile.TemporaryDirectory(prefix="backup-verify-") as staging:
        return unpack(Path(path), Path(staging))


def restore(path, force=False):
    """Put a backup back: the covers, the database in one step, then the kept and quarantined
    leads.

    Refuses, before changing anything, an archive that is damaged, holds anything its manifest
    does not name, is from another kind of database, or from a schema this code does not know,
    and a database that holds data unless `force`. An archive from an older schema is migrated
    on the way in.
    """
    database = databases.current()
    with tempfile.TemporaryDirectory(prefix="backup-restore-") as staging:
        staging = Path(staging)
        manifest = unpack(Path(path), staging)
        check_restorable(manifest, database)
        if not force and not database.is_empty():
            raise BackupError(
                "The database already holds data. Restore into an empty database, or pass "
                "--force to replace everything in it with the archive."
            )
        db.session.remove()
        db.engine.dispose()  # no pooled connection of ours may hold a lock on what is replaced
        # unpack checked every file against the manifest: no cover is replaced unless all are
        # sound. Covers first: should the database step fail, an extra cover harms nothing.
        put_files(staging, manifest, UPLOADS, upload_folder(), replace=True)
        info = manifest["database"]
        database.load(staging / info["file"], info["revision"], info["rows"])
        put_files(staging, manifest, SPOOL, spool.folder(), replace=False)
        put_files(staging, manifest, QUARANTINE, spool.quarantine_folder(), replace=False)
        db.engine.dispose()
    return manifest


def check_restorable(manifest, database):
    info = manifest["database"]
    if info["kind"] != database.kind:
        raise BackupError(
            f"This archive holds a {info['kind']} database and this site uses {database.label}: "
            "restore it into a site configured with the same kind of database."
        )
    if not schema.is_known(info["revision"]):
        raise BackupError(
            f"This archive's schema is at revision {info['revision']}, which this version of "
            f"the site does not know (it is at {schema.head()}): a newer version made it. "
            "Restore it with that version."
        )


def put_files(staging, manifest, folder, destination, replace):
    """Put the files the manifest lists in `folder`, each checked by unpack, in their place."""
    names = names_in(manifest, folder)
    if names:
        destination.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in names:
        if replace or not (destination / name).exists():
            shutil.copy2(staging / folder / name, destination / f".{name}.restoring")
            os.replace(destination / f".{name}.restoring", destination / name)
