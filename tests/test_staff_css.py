"""The staff stylesheets: every class they define is used, and no page needs inline style.

A class counts as used when markup names it: a class attribute in a template, a WTForms
`class_=`/`render_kw` class, markup built in Python under app/, or a `classList` call in
static/js/. Templates also build class names from values, as in `badge--{{ status }}`;
DYNAMIC_CLASSES lists, for each such prefix, the values that can follow it, taken from the
code that produces them wherever a constant or function exists.
"""

import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.extensions import db
from app.leads.models import LEAD_STATUSES, OutboxMessage
from app.posts import services as posts
from app.types import utcnow

ROOT = Path(__file__).resolve().parent.parent
STAFF_CSS = sorted((ROOT / "static/css/staff").glob("*.css"))


def post_statuses():
    """Every value posts.status() returns: a draft, a scheduled and a published post."""
    now = utcnow()
    moments = (None, now + timedelta(days=1), now - timedelta(days=1))
    return {posts.status(SimpleNamespace(published_at=moment)) for moment in moments}


# What the staff templates put after each prefix of a class name they build from a value.
DYNAMIC_CLASSES = {
    # staff/leads/_macros.html status_badge(lead.status), staff/leads/lead.html (the
    # OutboxMessage.status values set in app/leads/delivery.py), staff/posts/ (post_status)
    "badge--": {*LEAD_STATUSES, "pending", "sent", "failed", *post_statuses()},
    # staff/dashboard.html: one count per lead status
    "status-count--": set(LEAD_STATUSES),
    # _partials/flashes.html maps every other category to "info"
    "flash--": {"success", "error", "info"},
    # staff/_charts/macros.html: Point.kind, "value" by default (app/staff/charts.py),
    # "current" for this week (app/staff/dashboard.py), "other" and "empty" for the
    # buckets app/leads/stats.py makes
    "chart__item--": {"value", "current", "other", "empty"},
    # _macros/posts.html: cover_picture(class=...), given by post_card
    "": {"card__image"},
}

JINJA_TAG = r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}"
CLASS_ATTRIBUTE = re.compile(
    rf"""\bclass_?\s*=\s*(?:"((?:{JINJA_TAG}|[^"])*)"|'((?:{JINJA_TAG}|[^'])*)')""", re.S
)
CLASS_KEY = re.compile(r"""["']class["']\s*:\s*(?:"([^"]*)"|'([^']*)')""")
CLASS_LIST = re.compile(r"""classList\.(?:add|toggle|replace)\(([^)]*)\)""")
STRING = re.compile(r"""["']([^"']*)["']""")
DYNAMIC = re.compile(r"(\S*?)\{\{.*?\}\}", re.S)


def defined_classes(css):
    """Class names in the selectors of a stylesheet (not in comments, strings or values)."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    css = re.sub(r""""[^"]*"|'[^']*'""", '""', css)
    names = set()
    for selector in re.findall(r"([^{}]+)\{", css):
        if selector.strip().startswith("@"):
            continue
        selector = re.sub(r"\[[^\]]*\]", "", selector)
        names.update(re.findall(r"\.(-?[_a-zA-Z][\w-]*)", selector))
    return names


def class_values(text):
    """The contents of every class attribute, class_= argument and "class" key in a file."""
    for match in CLASS_ATTRIBUTE.finditer(text):
        yield match.group(1) if match.group(1) is not None else match.group(2)
    for match in CLASS_KEY.finditer(text):
        yield match.group(1) if match.group(1) is not None else match.group(2)
    for match in CLASS_LIST.finditer(text):
        yield " ".join(STRING.findall(match.group(1)))


def used_classes(value):
    """(static names, prefixes of names built from a value) in one class attribute."""
    prefixes = {match.group(1) for match in DYNAMIC.finditer(value)}
    static = re.sub(r"\S*\{\{.*?\}\}\S*", " ", value, flags=re.S)
    static = re.sub(JINJA_TAG, " ", static, flags=re.S)
    return set(static.split()), prefixes


def markup_files():
    yield from (ROOT / "templates").rglob("*.html")
    yield from (ROOT / "app").rglob("*.py")
    yield from (ROOT / "static/js").glob("*.js")


def scan():
    static, prefixes = set(), {}
    for path in markup_files():
        for value in class_values(path.read_text(encoding="utf-8")):
            names, built = used_classes(value)
            static |= names
            for prefix in built:
                prefixes.setdefault(prefix, set()).add(str(path.relative_to(ROOT)))
    return static, prefixes


def test_every_class_built_from_a_value_has_its_values_listed():
    _, prefixes = scan()
    unknown = {prefix: files for prefix, files in prefixes.items() if prefix not in DYNAMIC_CLASSES}
    assert not unknown, (
        "class names built from a value with no entry in DYNAMIC_CLASSES "
        f"(a prefix of '' is a whole class name from an expression): {unknown}"
    )
    assert set(DYNAMIC_CLASSES) <= set(prefixes), "DYNAMIC_CLASSES lists a prefix no file uses"


@pytest.mark.parametrize("sheet", STAFF_CSS, ids=lambda path: path.name)
def test_every_class_in_the_staff_css_is_used(sheet):
    static, _ = scan()
    built = {prefix + value for prefix, values in DYNAMIC_CLASSES.items() for value in values}
    unused = sorted(defined_classes(sheet.read_text(encoding="utf-8")) - static - built)
    assert not unused, f"{sheet.name} styles classes no markup uses; delete them: {unused}"


def test_the_scan_sees_static_conditional_and_built_class_names():
    names, prefixes = used_classes(
        "field{% if field.errors %} field--error{% endif %} badge--{{ status }} {{ extra }}"
    )
    assert names == {"field", "field--error"}
    assert prefixes == {"badge--", ""}
    assert defined_classes(
        '/* .comment */ .a:hover > .b-c__d, .e[data-x=".f"] { content: ".g"; margin: 0.5rem }'
        " @media (max-width: 29.99em) { .h { color: red } }"
    ) == {"a", "b-c__d", "e", "h"}


@pytest.fixture
def staff_pages(admin, make_lead, make_post):
    """Every kind of staff page, with something on it to show, and the status it answers."""
    lead = make_lead(status="spam", spam_reason="honeypot filled")
    lead.messages.append(
        OutboxMessage(
            kind="lead_notification", recipient="a@agency.test", status="failed", last_error="boom"
        )
    )
    db.session.commit()
    make_lead()
    post = make_post()
    return {
        "/staff/": 200,
        "/staff/leads/": 200,
        "/staff/leads/?from=not-a-date&status=unknown": 400,
        f"/staff/leads/{lead.reference}": 200,
        "/staff/leads/LC-0000-0000": 404,
        "/staff/posts/": 200,
        "/staff/posts/new": 200,
        f"/staff/posts/{post.id}/edit": 200,
        f"/staff/posts/{post.id}/delete": 200,
    }


def test_staff_pages_need_no_inline_style_script_or_handler(app, client, staff_pages):
    """Under the strict Content-Security-Policy these would be blocked."""
    responses = {"/staff/login": (app.test_client().get("/staff/login"), 200)}
    responses.update((url, (client.get(url), status)) for url, status in staff_pages.items())
    for url, (response, status) in responses.items():
        assert response.status_code == status, url
        html = response.text
        assert 'name="robots" content="noindex, nofollow"' in html, url
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), url
        assert not re.search(r"\sstyle=", html), url
        assert "<style" not in html, url
        assert not re.search(r"\son[a-z]+=", html), url
