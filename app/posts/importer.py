"""Load Markdown files with front matter from content/posts into the database, by slug."""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import frontmatter
import yaml

from app.extensions import db
from app.posts.models import Post
from app.posts.services import apply_fields, post_by_slug

REQUIRED = ("title", "slug", "standfirst", "published")


class ContentError(ValueError):
    """A content file cannot be imported; the message says why."""


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: list[tuple[Path, str]] = field(default_factory=list)


def import_directory(directory):
    report = ImportReport()
    for path in sorted(Path(directory).glob("*.md")):
        try:
            fields = read_post_file(path)
        except ContentError as error:
            report.errors.append((path, str(error)))
            continue
        outcome = upsert(fields)
        getattr(report, outcome).append(fields["slug"])
    db.session.commit()
    return report


def upsert(fields):
    post = post_by_slug(fields["slug"])
    if post is None:
        post = Post(slug=fields["slug"])
        apply_fields(post, fields)
        db.session.add(post)
        return "created"
    return "updated" if apply_fields(post, fields) else "unchanged"


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
