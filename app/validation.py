"""Input helpers shared by every form: trimming, line breaks, control and invisible characters."""

import re
import unicodedata

from wtforms.validators import ValidationError

# ASCII control characters (C0 and DEL). None belongs in stored text, and PostgreSQL
# refuses NUL in text outright: one reaching the database would be a server error.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# Also C1 controls (NEL is one) and the Unicode line and paragraph separators: the public
# form's one-line fields end up in email headers, where a mail client may break a line
# at any of them.
CONTROL_CHARACTERS_AND_SEPARATORS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# What multi-line text may not hold: every control character except tab and line breaks.
MULTI_LINE_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def strip(value):
    return value.strip() if isinstance(value, str) else value


def unix_newlines(value):
    """Browsers send a line break as CR LF but count it as one character against maxlength."""
    return value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else value


def drop_control_characters(value):
    """Multi-line text without control characters; tab and line breaks stay."""
    return MULTI_LINE_CONTROL_CHARACTERS.sub("", value) if isinstance(value, str) else value


def refuse(characters, message):
    """A validator refusing text with any of `characters`; `message` may name the {label}."""

    def check(form, field):
        if field.data and characters.search(field.data):
            raise ValidationError(message.format(label=field.label.text))

    return check


def single_line(message="{label} must be plain text on one line.", characters=CONTROL_CHARACTERS):
    return refuse(characters, message)


# Joiners shape the letters of Persian, Arabic and Indic names, and emoji: they stay.
JOINERS = {"\u200c", "\u200d"}


def drop_invisible(value):
    """Text without the format characters (Unicode category Cf) that can make a name or
    subject read differently from its bytes: bidi controls, zero-width spaces, the BOM.
    The zero-width joiner and non-joiner stay; they change how letters join, not order."""
    if not isinstance(value, str):
        return value
    return "".join(
        character
        for character in value
        if character in JOINERS or unicodedata.category(character) != "Cf"
    )
