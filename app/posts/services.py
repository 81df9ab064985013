"""Write-side operations on posts, shared by the content importer and the staff editor."""

import re
import unicodedata

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.posts.models import Post, Tag
from app.posts.rendering import count_words, render_markdown
from app.posts.uploads import discard_unused
from app.types import utcnow

_not_slug = re.compile(r"[^a-z0-9]+")


def slugify(text):
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _not_slug.sub("-", ascii_text.lower()).strip("-")[:80]


def tag_names_by_slug(names):
    """Display names keyed by their slug; the first spelling wins, names without a slug go."""
    wanted = {}
    for name in names:
        slug = slugify(name)
        if slug:
            wanted.setdefault(slug, name.strip())
    return wanted


def tags_named(names):
    """The Tag rows for these display names, creating the missing ones (matched by slug)."""
    wanted = tag_names_by_slug(names)
    existing = existing_tags(wanted)
    for slug, name in wanted.items():
        if slug not in existing:
            existing[slug] = Tag(slug=slug, name=name)
            db.session.add(existing[slug])
    return sorted((existing[slug] for slug in wanted), key=tag_name)


def unsaved_tags(names):
    """Tags as tags_named would return them, without creating any: for a preview."""
    wanted = tag_names_by_slug(names)
    existing = existing_tags(wanted)
    unsaved = (
        Tag(slug=slug, name=existing[slug].name if slug in existing else name)
        for slug, name in wanted.items()
    )
    return sorted(unsaved, key=tag_name)


def existing_tags(slugs):
    return {tag.slug: tag for tag in db.session.scalars(select(Tag).where(Tag.slug.in_(slugs)))}


def tag_name(tag):
    return tag.name


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


def differs(post, fields):
    """Whether apply_fields(post, fields) would change the post; it creates no tags."""
    for name, value in fields.items():
        if name == "tags":
            if sorted(tag.slug for tag in post.tags) != sorted(tag_names_by_slug(value)):
                return True
        elif getattr(post, name) != value:
            return True
    return False


def post_by_slug(slug):
    return db.session.scalars(select(Post).where(Post.slug == slug)).first()


class SlugTaken(ValueError):
    """Another post already has this slug."""


def status(post):
    if post.published_at is None:
        return "draft"
    return "scheduled" if post.published_at > utcnow() else "published"


def publish(post):
    """Make the post public now; a post that is already public keeps its date."""
    if status(post) != "published":
        post.published_at = utcnow()


def schedule(post, moment):
    post.published_at = moment


def unpublish(post):
    post.published_at = None


def save(post, fields, publication=None):
    """Create or update a post from editor fields, then apply a publication change if given.

    publication is a callable taking the post (publish, unpublish, or a bound schedule).
    Raises SlugTaken if another post took the slug first; nothing is saved then.
    """
    previous_cover = post.cover_image
    if apply_fields(post, fields) or publication is not None:
        # Explicitly: a change of tags alone writes no posts row, so onupdate would not run,
        # and the content importer reads a later updated_at as an edit made here.
        post.updated_at = utcnow()
    if publication is not None:
        publication(post)
    db.session.add(post)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if post_by_slug(fields["slug"]) not in (None, post):
            raise SlugTaken(fields["slug"]) from None
        raise
    if previous_cover != post.cover_image:
        discard_unused(previous_cover)
    return post


def delete(post):
    cover = post.cover_image
    db.session.delete(post)
    db.session.commit()
    discard_unused(cover)


def unsaved_post(fields, like=None):
    """A post built from editor fields and never added to the session: what a preview shows."""
    now = utcnow()
    values = {name: value for name, value in fields.items() if name != "tags"}
    post = Post(
        **values,
        tags=unsaved_tags(fields["tags"]),
        is_demo=like.is_demo if like else False,
        published_at=(like.published_at if like else None) or now,
        created_at=like.created_at if like else now,
        updated_at=now,
    )
    post.body_html = render_markdown(post.body_markdown)
    post.word_count = count_words(post.body_markdown)
    return post
