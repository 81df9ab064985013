"""The staff inbox: filters, counts per status, keyset pages and CSV rows over leads.

Pages are keyset pages on (created_at, id), newest first, so the hundredth page costs
what the first does: each is one range scan of ix_leads_created_at_id, never an OFFSET.
"""

import base64
import binascii
import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, literal_column, select, tuple_

from app import dates
from app.accounts.models import User
from app.extensions import db
from app.leads.models import LEAD_STATUSES, Lead

PAGE_SIZE = 50
EXPORT_CHUNK = 1000
OLDER, NEWER = "o", "n"
# One expression over every searched field, so that one trigram index on PostgreSQL
# (migration 0003, which spells the same expression) serves the search.
SPACE = literal_column("' '")
SEARCH_TEXT = func.lower(
    Lead.name + SPACE + Lead.email + SPACE + Lead.company + SPACE + Lead.message
)
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# Where a cell can start inside a field: the file is split at "," with quotes, but a
# spreadsheet whose list separator is ";" splits it at every ";" (quotes count only at the
# start of a cell, and there they fall mid-cell), one told to split at tabs or "|" there, a
# reader ignoring quotes at every ",", and any of them may take a line break inside a field
# for a new row, and trim the spaces before a cell. So quoting every field would not help; a
# formula start after any of them is neutralised as at the start of a cell.
CELL_START_INSIDE = re.compile(
    r'(?<=[,;|\t\r\n])(?=[ "]*[' + re.escape("".join(FORMULA_PREFIXES)) + "])"
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_cursor = re.compile(r"([on])\.(-?\d{1,18})\.(\d{1,18})")


class InvalidCursor(ValueError):
    """A page link that was not made here, or was damaged on the way."""


@dataclass(frozen=True)
class Cursor:
    direction: str
    created_at: datetime
    id: int

    @classmethod
    def after(cls, lead, direction):
        return cls(direction, lead.created_at, lead.id)

    def encode(self):
        micros = (self.created_at - EPOCH) // timedelta(microseconds=1)
        raw = f"{self.direction}.{micros}.{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token):
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        except (binascii.Error, UnicodeError, ValueError) as error:
            raise InvalidCursor(token) from error
        match = _cursor.fullmatch(raw)
        if not match:
            raise InvalidCursor(token)
        try:
            created_at = EPOCH + timedelta(microseconds=int(match[2]))
        except OverflowError as error:
            raise InvalidCursor(token) from error
        return cls(match[1], created_at, int(match[3]))


NEWEST_FIRST = (Lead.created_at.desc(), Lead.id.desc())
OLDEST_FIRST = (Lead.created_at.asc(), Lead.id.asc())


@dataclass(frozen=True)
class Filters:
    status: str = ""
    received_from: date | None = None
    received_to: date | None = None
    source: str = ""
    search: str = ""

    def conditions(self, with_status=True):
        conditions = []
        if with_status and self.status:
            conditions.append(Lead.status == self.status)
        if self.received_from:
            conditions.append(Lead.created_at >= start_of(self.received_from))
        if self.received_to and self.received_to < date.max:
            conditions.append(Lead.created_at < start_of(self.received_to + timedelta(days=1)))
        if self.source:
            conditions.append(Lead.source_path == self.source)
        if self.search:
            pattern = f"%{escape_like(self.search.lower())}%"
            conditions.append(SEARCH_TEXT.like(pattern, escape="\\"))
        return conditions

    def query_args(self, **changes):
        """The filters as URL query arguments (only those set), for links that keep them."""
        values = {
            "status": self.status,
            "from": self.received_from.isoformat() if self.received_from else "",
            "to": self.received_to.isoformat() if self.received_to else "",
            "source": self.source,
            "q": self.search,
            **changes,
        }
        return {name: value for name, value in values.items() if value}

    @property
    def active(self):
        return bool(self.query_args())


def start_of(day):
    return datetime.combine(day, time.min, tzinfo=UTC)


def escape_like(text):
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def status_counts(filters):
    """Leads per status under every filter except the status itself: one GROUP BY."""
    query = (
        select(Lead.status, func.count())
        .where(*filters.conditions(with_status=False))
        .group_by(Lead.status)
    )
    counts = dict.fromkeys(LEAD_STATUSES, 0)
    counts.update(db.session.execute(query).all())
    return counts


@dataclass
class Page:
    leads: list[Lead]
    older: Cursor | None
    newer: Cursor | None
    is_first: bool


def inbox_page(filters, cursor=None, size=PAGE_SIZE):
    """One page of leads, newest first, starting after `cursor` in its direction."""
    if cursor is not None and cursor.direction == NEWER:
        leads, more = fetch(filters, [newer_than(cursor.created_at, cursor.id)], OLDEST_FIRST, size)
        if not more:
            # Back at the top: show the real first page, a full one, not a remainder.
            return inbox_page(filters, None, size)
        leads.reverse()
        has_newer, has_older = True, True
    else:
        after = [] if cursor is None else [older_than(cursor.created_at, cursor.id)]
        leads, has_older = fetch(filters, after, NEWEST_FIRST, size)
        has_newer = cursor is not None and bool(leads) and exists_newer(filters, leads[0])
    return Page(
        leads=leads,
        older=Cursor.after(leads[-1], OLDER) if has_older and leads else None,
        newer=Cursor.after(leads[0], NEWER) if has_newer else None,
        is_first=cursor is None,
    )


def older_than(created_at, lead_id):
    """Sorts after (created_at, id), newest first; one range on ix_leads_created_at_id."""
    return tuple_(Lead.created_at, Lead.id) < tuple_(created_at, lead_id)


def newer_than(created_at, lead_id):
    return tuple_(Lead.created_at, Lead.id) > tuple_(created_at, lead_id)


def fetch(filters, clauses, order, size):
    """Up to `size` leads in `order`, and whether there are more beyond them."""
    query = select(Lead).where(*filters.conditions(), *clauses).order_by(*order).limit(size + 1)
    leads = list(db.session.scalars(query))
    return leads[:size], len(leads) > size


def exists_newer(filters, lead):
    query = select(Lead.id).where(*filters.conditions(), newer_than(lead.created_at, lead.id))
    return db.session.scalars(query.limit(1)).first() is not None


# CSV export: (header, column) in file order.
EXPORT_COLUMNS = (
    ("Reference", Lead.reference),
    ("Received (UTC)", Lead.created_at),
    ("Status", Lead.status),
    ("Name", Lead.name),
    ("Email", Lead.email),
    ("Company", Lead.company),
    ("Phone", Lead.phone),
    ("Message", Lead.message),
    ("Source page", Lead.source_path),
    ("Source URL", Lead.source_url),
    ("Referrer", Lead.page_referrer),
    ("UTM source", Lead.utm_source),
    ("UTM medium", Lead.utm_medium),
    ("UTM campaign", Lead.utm_campaign),
    ("UTM term", Lead.utm_term),
    ("UTM content", Lead.utm_content),
    ("Assignee", User.email),
    ("Consent version", Lead.consent_version),
)


def export_rows(filters, chunk=EXPORT_CHUNK):
    """Every matching lead as a tuple, newest first, fetched `chunk` rows at a time."""
    query = (
        select(*(column for _, column in EXPORT_COLUMNS))
        .outerjoin(User, Lead.assignee_id == User.id)
        .where(*filters.conditions())
        .order_by(*NEWEST_FIRST)
        .execution_options(yield_per=chunk)
    )
    yield from db.session.execute(query)


def csv_chunks(filters, chunk=EXPORT_CHUNK):
    """The CSV file as text pieces: a BOM (so Excel reads UTF-8), the header, rows in chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([header for header, _ in EXPORT_COLUMNS])
    yield "\ufeff" + take(buffer)
    for number, row in enumerate(export_rows(filters, chunk), start=1):
        writer.writerow([csv_cell(value) for value in row])
        if number % chunk == 0:
            yield take(buffer)
    yield take(buffer)


def take(buffer):
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, datetime):
        return dates.spreadsheet(value)
    text = CELL_START_INSIDE.sub("'", str(value))
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text
