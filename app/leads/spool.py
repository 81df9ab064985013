"""Leads kept on local disk while the database cannot take them, and moved in when it can.

A visitor's "Send" is the one moment that matters. When the commit fails, the lead is written
to LEAD_SPOOL_DIR as one JSON file named by its reference (written to a temporary name,
fsync'd, then renamed, mode 0600), and the visitor sees the usual thank-you page. The delivery
worker moves kept leads into the database before each run; the unique reference makes that
happen once, however many workers try at once.

Each file is moved on its own. When the database cannot take writes at all (unreachable,
read-only, behind the code's migrations), the run stops and every file waits, with nothing
counted against it. Any other failure to store one record (a constraint, a value it cannot
hold or encode, an error nobody foresaw), or a file that cannot be read, is an attempt,
counted on disk beside the file in <reference>.attempts (so a restarted worker keeps the
count), at most once every ATTEMPT_SPACING so that a passing fault does not use them all up.
After QUARANTINE_AFTER attempts the file and its count move to quarantine/, for a person to
look at with `flask leads spool`, and the other files carry on.
"""

import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import (
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.extensions import cause_of, db
from app.leads.models import REFERENCE, Lead
from app.leads.notifications import queue_notifications
from app.types import UTCDateTime

# What a kept lead holds: every column the form fills in; the database adds the rest.
KEPT = tuple(
    column.key for column in Lead.__table__.columns if column.key not in {"id", "assignee_id"}
)
DATETIMES = {
    column.key for column in Lead.__table__.columns if isinstance(column.type, UTCDateTime)
}
RECORD = ".json"
ATTEMPTS = ".attempts"
TEMPORARY = ".tmp"
QUARANTINE = "quarantine"
QUARANTINE_AFTER = 3
ATTEMPT_SPACING = timedelta(minutes=1)
# keep() removes its temporary file when it fails; an older one was left by a crash.
TEMPORARY_MAX_AGE = timedelta(hours=1)
# A form post is at most 64 KB: a larger file is not a lead this site kept.
MAX_RECORD_BYTES = 1024 * 1024
# The database as a whole cannot take writes now: unreachable, read-only (InternalError),
# behind the code's migrations (ProgrammingError; OperationalError on SQLite). Anything else
# is about the one record, and counts against it.
DATABASE_NOT_NOW = (OperationalError, InterfaceError, InternalError, ProgrammingError, PoolTimeout)


class SpoolError(ValueError):
    """A kept lead cannot be read; the message says why."""


@dataclass(frozen=True)
class Entry:
    """A file in the spool or in its quarantine, with what was tried."""

    path: Path
    quarantined: bool
    waiting_since: datetime
    attempts: int
    reason: str


@dataclass(frozen=True)
class Backlog:
    kept: int
    oldest_kept: datetime | None
    quarantined: int
    oldest_quarantined: datetime | None


def folder():
    return Path(current_app.config["LEAD_SPOOL_DIR"])


def quarantine_folder():
    return folder() / QUARANTINE


def keep(lead):
    """Write the lead durably to the spool; only then may the visitor be thanked."""
    spool = folder()
    spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = json.dumps(record_of(lead), ensure_ascii=False).encode()
    write(spool / f"{lead.reference}{RECORD}", data)


def write(path, data):
    """Replace `path` durably: a temporary file (mode 0600) fsync'd, renamed, folder fsync'd."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=TEMPORARY)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def sync_folder(spool):
    """Make the rename itself durable."""
    descriptor = os.open(spool, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def record_of(lead):
    """The lead's set values as JSON types; unset ones get their defaults when stored."""
    values = {key: getattr(lead, key) for key in KEPT}
    return {
        key: value.isoformat() if key in DATETIMES else value
        for key, value in values.items()
        if value is not None
    }


def files(directory, suffix):
    """The entries of `directory` whose names end in `suffix`, by name; none if it does not
    exist. Unlike Path.glob, a folder that cannot be listed raises instead of looking empty."""
    try:
        with os.scandir(directory) as entries:
            return sorted(Path(entry.path) for entry in entries if entry.name.endswith(suffix))
    except FileNotFoundError:
        return []


def places(reference):
    """Where a kept lead with this reference may be: waiting, or in quarantine."""
    return [directory / f"{reference}{RECORD}" for directory in (folder(), quarantine_folder())]


def kept(reference):
    """The kept lead with this reference, or None (also for text that is no reference)."""
    if not REFERENCE.fullmatch(reference):
        return None
    for path in places(reference):
        try:
            return lead_from(read(path))
        except (OSError, SpoolError):
            continue
    return None


def contents_of(path):
    """The bytes of a regular file of a lead record's size. A directory, a symbolic link or a
    pipe (whose read would wait for a writer) named like a lead is refused, not followed."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise SpoolError("not a regular file")
        if status.st_size > MAX_RECORD_BYTES:
            raise SpoolError(f"too large for a lead record ({status.st_size} bytes)")
        return file.read(MAX_RECORD_BYTES)


def read(path):
    try:
        record = json.loads(contents_of(path))
    except OSError as error:
        if not path.is_symlink():
            raise
        raise SpoolError("a symbolic link, not a file") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SpoolError(f"not a complete lead record ({error})") from error
    if not isinstance(record, dict) or not REFERENCE.fullmatch(str(record.get("reference"))):
        raise SpoolError("not a lead record: it has no reference")
    if f"{record['reference']}{RECORD}" != path.name:
        raise SpoolError("its name is not its reference")
    unknown = set(record) - set(KEPT)
    if unknown:
        raise SpoolError(f"unknown fields: {', '.join(sorted(unknown))}")
    not_text = [key for key, value in record.items() if not isinstance(value, str)]
    if not_text:
        raise SpoolError(f"not text: {', '.join(sorted(not_text))}")
    unencodable = [key for key, value in record.items() if not encodes(value)]
    if unencodable:
        raise SpoolError(f"not valid Unicode: {', '.join(sorted(unencodable))}")
    return record


def encodes(text):
    """False for text holding a lone surrogate, which JSON allows and no database stores."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def lead_from(record):
    try:
        values = {
            key: datetime.fromisoformat(value) if key in DATETIMES else value
            for key, value in record.items()
        }
    except ValueError as error:
        raise SpoolError(f"a date cannot be read ({error})") from error
    if any(values[key].tzinfo is None for key in DATETIMES & set(values)):
        raise SpoolError("a date has no time zone")
    return Lead(**values)


def drain():
    """Move every kept lead the database takes into it, once. Returns (moved, problems): the
    references stored now, and a line for each file refused or unreadable (counted, and
    quarantined in the end) and for a run the database stopped (nothing counted).

    Raises only when the spool itself cannot be listed."""
    spool = folder()
    remove_leftovers(spool)
    moved, problems = [], []
    for path in files(spool, RECORD):
        try:
            lead = lead_from(read(path))
        except FileNotFoundError:
            continue  # another worker moved it in the meantime
        except (OSError, SpoolError) as error:
            problems.append(count_refusal(path, reason_of(error)))
            continue
        try:
            stored = store(lead)
        except DATABASE_NOT_NOW as error:
            db.session.rollback()
            problems.append(wait_for_the_database(error))
            break
        except Exception as error:
            db.session.rollback()
            refused = f"the database refused it ({type(cause_of(error)).__name__})"
            problems.append(count_refusal(path, refused))
            continue
        if stored:
            moved.append(lead.reference)
        remove(path)
    return moved, problems


def reason_of(error):
    """Why a file cannot be read, without its path (or anything it holds)."""
    return getattr(error, "strerror", None) or str(error)


def wait_for_the_database(error):
    name = type(cause_of(error)).__name__
    current_app.logger.warning(
        "The database cannot take kept leads now (%s); they wait for the next run",
        name,
    )
    return f"the database cannot take kept leads now ({name}); they wait for the next run"


def store(lead):
    """Insert the lead with its notifications; False if its reference is stored already."""
    if is_stored(lead.reference):
        return False
    db.session.add(lead)
    if not lead.is_spam:
        queue_notifications(lead)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if is_stored(lead.reference):  # another worker stored it since the check
            return False
        raise
    return True


def is_stored(reference):
    return db.session.scalar(select(Lead.id).where(Lead.reference == reference)) is not None


def count_refusal(path, reason):
    """Count an attempt at a refused or unreadable file, quarantining it at the last one, and
    log it by its name (never what it holds). Returns the line for the worker's report."""
    attempts = attempts_of(path)[0]
    if attempts and counted_recently(path):
        return f"{path}: {reason} (attempt {attempts} of {QUARANTINE_AFTER} counted already)"
    attempts += 1
    try:
        if attempts < QUARANTINE_AFTER:
            write(attempts_file(path), note(attempts, reason))
            current_app.logger.error(
                "Kept lead %s refused, attempt %s of %s: %s",
                path.name,
                attempts,
                QUARANTINE_AFTER,
                reason,
            )
            return f"{path}: {reason} (attempt {attempts} of {QUARANTINE_AFTER})"
        moved_to = quarantine(path, attempts, reason)
    except OSError as error:
        current_app.logger.error(
            "Kept lead %s refused (%s) and its attempt cannot be recorded: %s",
            path.name,
            reason,
            error.strerror,
        )
        return f"{path}: {reason}; the attempt cannot be recorded ({error.strerror})"
    current_app.logger.error(
        "Kept lead %s quarantined after %s attempts: %s", path.name, attempts, reason
    )
    return f"{path}: {reason}; quarantined after {attempts} attempts as {moved_to}"


def quarantine(path, attempts, reason):
    target = quarantine_folder()
    target.mkdir(mode=0o700, exist_ok=True)
    write(target / attempts_file(path).name, note(attempts, reason))
    moved_to = target / path.name
    os.replace(path, moved_to)
    attempts_file(path).unlink(missing_ok=True)
    return moved_to


def counted_recently(path):
    try:
        counted_at = attempts_file(path).stat().st_mtime
    except OSError:
        return False
    return time.time() - counted_at < ATTEMPT_SPACING.total_seconds()


def attempts_file(path):
    return path.with_name(f"{path.name.removesuffix(RECORD)}{ATTEMPTS}")


def note(attempts, reason):
    return json.dumps({"attempts": attempts, "reason": reason}).encode()


def attempts_of(path):
    """(attempts, last reason) counted for a kept file: (0, "") before any, or if unreadable."""
    try:
        counted = json.loads(contents_of(attempts_file(path)))
        return int(counted["attempts"]), str(counted["reason"])
    except (OSError, SpoolError, ValueError, TypeError, KeyError):
        return 0, ""


def remove(path):
    """Delete a kept file and its count; False (and logged) if it cannot be deleted."""
    try:
        path.unlink(missing_ok=True)
        attempts_file(path).unlink(missing_ok=True)
    except OSError as error:
        current_app.logger.error("Kept lead %s cannot be deleted: %s", path, error.strerror)
        return False
    return True


def remove_leftovers(spool):
    """Delete temporary files a crash left in keep(): they may hold a visitor's data."""
    cutoff = time.time() - TEMPORARY_MAX_AGE.total_seconds()
    for path in files(spool, TEMPORARY):
        try:
            if path.lstat().st_mtime < cutoff:
                path.unlink()
                current_app.logger.info("Leftover temporary file %s deleted", path.name)
        except FileNotFoundError:
            continue
        except OSError as error:
            current_app.logger.error(
                "Leftover temporary file %s cannot be deleted: %s", path.name, error.strerror
            )


def waiting_since(path):
    """When the file was kept: its modification time, which a rename leaves as it was."""
    return datetime.fromtimestamp(path.lstat().st_mtime, UTC)


def entries():
    """Every kept file, then every quarantined one, with its age, attempts and last reason."""
    found = []
    for directory, quarantined in [(folder(), False), (quarantine_folder(), True)]:
        for path in files(directory, RECORD):
            try:
                since = waiting_since(path)
            except FileNotFoundError:
                continue
            found.append(Entry(path, quarantined, since, *attempts_of(path)))
    return found


def backlog():
    """How many leads wait in the spool and in quarantine, and the oldest of each."""
    waiting = entries()
    kept = [entry.waiting_since for entry in waiting if not entry.quarantined]
    held = [entry.waiting_since for entry in waiting if entry.quarantined]
    return Backlog(len(kept), min(kept, default=None), len(held), min(held, default=None))


def retry(path):
    """Move a quarantined file back to the spool with its count cleared."""
    os.replace(path, folder() / path.name)
    attempts_file(path).unlink(missing_ok=True)


def received_at(path):
    """When the kept lead was received; for a file that cannot be read, when it was kept."""
    try:
        return lead_from(read(path)).created_at or waiting_since(path)
    except (OSError, SpoolError):
        return waiting_since(path)


def purge(cutoff, dry_run=False):
    """Delete kept and quarantined leads received before `cutoff`. Returns (how many were or
    would be deleted, a line for each file that could not be)."""
    old = []
    for entry in entries():
        try:
            if received_at(entry.path) < cutoff:
                old.append(entry.path)
        except FileNotFoundError:
            continue
    if dry_run:
        return len(old), []
    problems = [f"{path} cannot be deleted" for path in old if not remove(path)]
    return len(old) - len(problems), problems


def discard(reference):
    """Delete the kept or quarantined copies of a lead being erased; False (and logged) if
    one of them cannot be deleted."""
    return all([remove(path) for path in places(reference)])
