"""Leads kept on local disk while the database cannot be reached, and moved in when it can.

A visitor's "Send" is the one moment that matters. When the commit fails because the
database is down, the lead is written to LEAD_SPOOL_DIR as one JSON file named by its
reference (written to a temporary name, fsync'd, then renamed, mode 0600), and the visitor
sees the usual thank-you page. The delivery worker moves kept leads into the database before
each run; the unique reference makes that happen once, however many workers try at once.
"""

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from app.extensions import DATABASE_UNAVAILABLE, db
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


class SpoolError(ValueError):
    """A kept lead cannot be read; the message says why."""


def folder():
    return Path(current_app.config["LEAD_SPOOL_DIR"])


def keep(lead):
    """Write the lead durably to the spool; only then may the visitor be thanked."""
    spool = folder()
    spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = json.dumps(record_of(lead), ensure_ascii=False).encode()
    descriptor, temporary = tempfile.mkstemp(dir=spool, suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, spool / f"{lead.reference}.json")
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    sync_folder(spool)


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


def kept(reference):
    """The kept lead with this reference, or None (also for text that is no reference)."""
    if not REFERENCE.fullmatch(reference):
        return None
    path = folder() / f"{reference}.json"
    try:
        return lead_from(read(path))
    except (FileNotFoundError, SpoolError):
        return None


def read(path):
    try:
        record = json.loads(Path(path).read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SpoolError(f"not a complete lead record ({error})") from error
    if not isinstance(record, dict) or not REFERENCE.fullmatch(str(record.get("reference"))):
        raise SpoolError("not a lead record: it has no reference")
    unknown = set(record) - set(KEPT)
    if unknown:
        raise SpoolError(f"unknown fields: {', '.join(sorted(unknown))}")
    return record


def lead_from(record):
    try:
        values = {
            key: datetime.fromisoformat(value) if key in DATETIMES else value
            for key, value in record.items()
        }
    except (TypeError, ValueError) as error:
        raise SpoolError(f"a date cannot be read ({error})") from error
    if any(values[key].tzinfo is None for key in DATETIMES & set(values)):
        raise SpoolError("a date has no time zone")
    return Lead(**values)


def drain():
    """Move every readable kept lead into the database once. Returns (moved, problems):
    the references stored now, and a line for each file that cannot be read (left in place)."""
    moved, problems = [], []
    for path in sorted(folder().glob("*.json")):
        try:
            lead = lead_from(read(path))
        except FileNotFoundError:
            continue  # another worker moved it in the meantime
        except SpoolError as error:
            problems.append(f"{path}: {error}")
            current_app.logger.error("Spooled lead %s cannot be read: %s", path.name, error)
            continue
        try:
            if store(lead):
                moved.append(lead.reference)
        except DATABASE_UNAVAILABLE:
            db.session.rollback()
            break  # the database is away again: the rest wait, and the emails still go
        except SQLAlchemyError as error:
            db.session.rollback()
            problems.append(f"{path}: the database refused it ({type(error).__name__})")
            current_app.logger.error("Spooled lead %s refused: %s", path.name, type(error))
            continue
        path.unlink(missing_ok=True)
    return moved, problems


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
