"""Write-side operations on posts, shared by the content importer and the staff editor."""

import re
import unicodedata

from sqlalchemy import select

from app.extensions import db
from app.posts.models import Post, Tag
from app.posts.rendering import count_words, render_markdown

_not_slug = re.compile(r"[^a-z0-9]+")


def slugify(text):
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _not_slug.sub("-", ascii_text.lower()).strip("-")[:80]


def tags_named(names):
    """The Tag rows for these display names, creating the missing ones (matched by slug)."""
    wanted = {}
    for name in names:
        slug = slugify(name)
        if slug:
            wanted.setdefault(slug, name.strip())
    existing = {
        tag.slug: tag for tag in db.session.scalars(select(Tag).where(Tag.slug.in_(wanted)))
    }
    for slug, name in wanted.items():
        if slug not in existing:
            existing[slug] = Tag(slug=slug, name=name)
            db.session.add(existing[slug])
    return sorted((existing[slug] for slug in wanted), key=lambda tag: tag.name)


def apply_fields(post, fields):
    """Set editable fields and everything derived from them; True if anything changed."""
    changed = False
    for name, value in fields.items():
        if name == "tags":
            value = tags_named(value)
        if getattr(post, name) != value:
            setattr(post, name, value)
            changed = True
    if changed or not post.body_html:
        post.body_html = render_markdown(post.body_markdown)
        post.word_count = count_words(post.body_markdown)
    return changed


def post_by_slug(slug):
    return db.session.scalars(select(Post).where(Post.slug == slug)).first()
