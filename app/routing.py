"""URL converters shared by every blueprint."""

from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

# The largest value of an integer column on PostgreSQL (SQLite's is larger). A bigger number
# in a URL names no row; looked up, it would fail as an overflow, a server error on both.
MAX_ID = 2**31 - 1


def is_id(digits):
    """Whether a string of digits can be a row id: 1 to MAX_ID (a long one is never int()ed)."""
    return len(digits) <= len(str(MAX_ID)) and 1 <= int(digits) <= MAX_ID


class IdConverter(IntegerConverter):
    """A row id in a URL, `<id:name>`: 1 to MAX_ID; any other number is a 404."""

    def to_python(self, value):
        if not is_id(value):
            # Not the converter's usual ValidationError: the router would take it for a
            # wrong method when the same path has a rule for another one, and answer 405.
            raise NotFound()
        return int(value)


def init_app(app):
    app.url_map.converters["id"] = IdConverter
