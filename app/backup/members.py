"""Reading a backup archive back, trusting nothing in it: once an archive has left the host it
is input like any upload. Every header and the manifest are checked before a byte is written;
then only the members the manifest names are read, each a regular file under a plain name,
each written through a path built here. tarfile's extraction filters are not relied on: before
Python 3.11.13 they can be bypassed (CVE-2025-4517).
"""

import gzip
import hashlib
import json
import os
import re
import tarfile
import zlib
from datetime import UTC, datetime

from app.backup.databases import BackupError

FORMAT = 1
MANIFEST = "manifest.json"
UPLOADS = "uploads"
SPOOL = "spool"
QUARANTINE = "quarantine"
FOLDERS = (UPLOADS, SPOOL, QUARANTINE)
# Far above the manifest of any site's backup: a bigger one is not ours, and is read in memory.
MANIFEST_LIMIT = 64 * 1024 * 1024
BLOCK = 1024 * 1024
SHA256 = re.compile(r"[0-9a-f]{64}")
UNREADABLE = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)
WORDS = {str: "text", dict: "an object"}


class Refused(Exception):
    """Something in the archive this site will not read; the message says what."""


class Damaged(Exception):
    """Files missing from the archive, or not as its manifest says."""


def is_plain_name(name):
    """A name that can only mean a file in the folder it is put in."""
    return (
        bool(name)
        and name.isprintable()
        and "/" not in name
        and ".." not in name
        and not name.startswith(".")
    )


def is_member_name(name):
    """A plain name at the top, or a plain name in one of the archive's folders."""
    parts = name.split("/")
    in_place = len(parts) == 1 or (len(parts) == 2 and parts[0] in FOLDERS)
    return in_place and is_plain_name(parts[-1])


def names_in(manifest, folder):
    """The plain names of the files the manifest lists in one of the archive's folders."""
    return [name.split("/")[1] for name in manifest["files"] if name.startswith(f"{folder}/")]


def unpack(path, staging):
    """Check the archive at `path`, write its files under `staging`, return its manifest."""
    if not path.is_file():
        raise BackupError(f"There is no archive at {path}.")
    try:
        with tarfile.open(path, mode="r:gz") as archive:
            members = checked_members(archive.getmembers())
            manifest = read_manifest(archive, members)
            expected = manifest["files"]
            check_named(members, expected)
            found = {
                name: extract(archive, member, staging, name)
                for name, member in members.items()  # in the archive's order: no seeking back
                if name != MANIFEST
            }
            check_found(found, expected)
    except Refused as why:
        raise BackupError(f"{path} is refused, and nothing was taken from it: {why}.") from None
    except Damaged as damaged:
        names = ", ".join(damaged.args[0])
        raise BackupError(f"{path} is damaged: {names} not as the manifest says.") from None
    except UNREADABLE as error:
        raise BackupError(f"{path} is not a complete backup archive ({error}).") from None
    except OSError as error:
        raise BackupError(f"{path} cannot be read or unpacked ({error}).") from None
    return manifest


def checked_members(members):
    """The members by name, each a regular file under a name a backup's files have."""
    found = {}
    for member in members:
        if not is_member_name(member.name):
            raise Refused(f"it holds {member.name!r}, which is not a name a backup's file has")
        if not member.isreg():
            raise Refused(f"{member.name!r} is {kind_of(member)}, not a regular file")
        if member.name in found:
            raise Refused(f"it holds {member.name!r} twice")
        found[member.name] = member
    return found


def kind_of(member):
    if member.issym():
        return f"a symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"a hard link to {member.linkname!r}"
    if member.isdir():
        return "a directory"
    return "a device or a pipe"


def read_manifest(archive, members):
    member = members.get(MANIFEST)
    if member is None:
        raise Refused(f"it has no {MANIFEST}")
    if member.size > MANIFEST_LIMIT:
        raise Refused(f"its {MANIFEST} is larger than any backup's")
    try:
        manifest = json.load(archive.extractfile(member))
    except (ValueError, RecursionError) as error:
        raise Refused(f"its {MANIFEST} is not JSON ({error})") from None
    check_manifest(manifest)
    return manifest


def check_manifest(manifest):
    """Everything verify and restore rely on is there, with the right types."""
    if not isinstance(manifest, dict):
        raise Refused("its manifest is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise Refused(
            f"its manifest is of format {manifest.get('format')!r}, and this version of the "
            f"site reads format {FORMAT}"
        )
    try:
        created_at = datetime.fromisoformat(field(manifest, "created_at", str))
        created_at.astimezone(UTC)  # a naive time, or one that cannot be shown in UTC, fails
        if created_at.tzinfo is None:
            raise ValueError
    except (ValueError, OverflowError):
        raise Refused("its manifest's created_at is not a date and time in UTC") from None
    database = field(manifest, "database", dict)
    for key in ("kind", "file", "revision"):
        field(database, key, str, within="database.")
    if not all(map(is_count, field(database, "rows", dict, within="database.").values())):
        raise Refused("its manifest's database.rows are not all counts of rows")
    files = field(manifest, "files", dict)
    database_file = database["file"]
    if not is_plain_name(database_file) or database_file == MANIFEST or database_file not in files:
        raise Refused(f"its manifest's database.file {database_file!r} is not one of its files")
    for name, entry in files.items():
        check_entry(name, entry, database_file)


def field(mapping, key, kind, within=""):
    value = mapping.get(key)
    if not isinstance(value, kind):
        raise Refused(f"its manifest's {within}{key} is missing or not {WORDS[kind]}")
    return value


def is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_entry(name, entry, database_file):
    if name != database_file and not (is_member_name(name) and "/" in name):
        raise Refused(f"its manifest names {name!r}, which is not a file a backup holds")
    if not (
        isinstance(entry, dict)
        and is_count(entry.get("bytes"))
        and isinstance(entry.get("sha256"), str)
        and SHA256.fullmatch(entry["sha256"])
    ):
        raise Refused(f"its manifest gives {name!r} no size in bytes and SHA-256")


def check_named(members, expected):
    """The archive holds the manifest and the files it names, at the sizes it gives: no more."""
    extra = sorted(members.keys() - expected.keys() - {MANIFEST})
    if extra:
        raise Refused(f"it holds {', '.join(map(repr, extra))}, which its manifest does not name")
    absent_or_resized = [
        name
        for name, entry in expected.items()
        if name not in members or members[name].size != entry["bytes"]
    ]
    if absent_or_resized:
        raise Damaged(sorted(absent_or_resized))


def extract(archive, member, staging, name):
    """Stream one checked member to a new file under staging; return its size and SHA-256."""
    target = staging.joinpath(*name.split("/"))
    target.parent.mkdir(mode=0o700, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with archive.extractfile(member) as source, open(target, "xb", opener=private) as file:
        for block in iter(lambda: source.read(BLOCK), b""):
            digest.update(block)
            size += file.write(block)
    return {"bytes": size, "sha256": digest.hexdigest()}


def private(path, flags):
    """Files from an archive hold personal data: only the site's user may read them."""
    return os.open(path, flags, 0o600)


def check_found(found, expected):
    wrong = [
        name
        for name, entry in expected.items()
        if (found[name]["bytes"], found[name]["sha256"]) != (entry["bytes"], entry["sha256"])
    ]
    if wrong:
        raise Damaged(sorted(wrong))
