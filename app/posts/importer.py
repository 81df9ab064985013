"""Load Markdown files with front matter from content/posts into the database, by slug."""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import frontmatter
import yaml

from app import dates
from app.extensions import db
from app.posts.models import Post
from app.posts.services import apply_fields, differs, post_by_slug
from app.posts.uploads import make_variants
from app.types import utcnow

REQUIRED = ("title", "slug", "standfirst", "published")


class ContentError(ValueError):
    """A content file cannot be imported; the message says why."""


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Posts that exist already, left as they are because no update was asked for.
    skipped: list[str] = field(default_factory=list)
    # (slug, why): an update would have overwritten what staff wrote in the web editor.
    refused: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[Path, str]] = field(default_factory=list)
    # (slug, cover): the file's cover image is missing or unreadable.
    bad_covers: list[tuple[str, str]] = field(default_factory=list)


def import_directory(directory, update=False):
    """Create a post for each new file; with `update`, also update existing posts from their
    files, except those changed in the web editor since their last import. Each file's cover
    gets its WebP copies."""
    report = ImportReport()
    for path in sorted(Path(directory).glob("*.md")):
        try:
            fields = read_post_file(path)
        except ContentError as error:
            report.errors.append((path, str(error)))
            continue
        import_post(fields, update, report)
        cover = fields["cover_image"]
        if cover and not make_variants(cover):
            report.bad_covers.append((fields["slug"], cover))
    db.session.commit()
    return report


def import_post(fields, update, report):
    slug = fields["slug"]
    post = post_by_slug(slug)
    if post is None:
        post = Post(slug=slug)
        apply_fields(post, fields)
        mark_imported(post)
        db.session.add(post)
        report.created.append(slug)
    elif not update:
        report.skipped.append(slug)
    elif (why := web_edit_of(post)) and differs(post, fields):
        report.refused.append((slug, why))
    elif apply_fields(post, fields):
        mark_imported(post)
        report.updated.append(slug)
    else:
        report.unchanged.append(slug)


def web_edit_of(post):
    """Why the post's own text may differ from its file, or None if it cannot."""
    if post.imported_at is None:
        return "it has no import on record (written in the web editor, or imported earlier)"
    if post.updated_at > post.imported_at:
        return f"it was changed in the web editor on {dates.stamp(post.updated_at)}"
    return None


def mark_imported(post):
    # Both set together, so only a later edit makes updated_at the newer of the two.
    post.imported_at = post.updated_at = utcnow()


def read_post_file(path):
    try:
        document = frontmatter.load(path)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ContentError(f"front matter is not valid YAML: {error}") from error
    meta = document.metadata
    missing = [key for key in REQUIRED if not meta.get(key)]
    if missing:
        raise ContentError(f"front matter lacks {', '.join(missing)}")
    tags = meta.get("tags") or []
    if not isinstance(tags, list):
        raise ContentError("tags must be a list, e.g. [Energy Storage, China]")
    return {
        "slug": str(meta["slug"]),
        "title": str(meta["title"]),
        "standfirst": str(meta["standfirst"]),
        "body_markdown": document.content,
        "source_markdown": str(meta.get("source", "")),
        "meta_description": str(meta.get("meta_description", "")),
        "cover_image": meta.get("cover"),
        "cover_alt": str(meta.get("cover_alt", "")),
        "is_demo": bool(meta.get("demo", False)),
        "published_at": parse_published(meta["published"]),
        "tags": [str(tag) for tag in tags],
    }


def parse_published(value):
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError as error:
            raise ContentError(f"published is not a date: {value!r}") from error
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
