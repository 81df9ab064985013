"""Read-side queries for posts; every one is portable SQL (SQLite and PostgreSQL)."""

from sqlalchemy import case, func, select

from app.extensions import db
from app.posts.models import Post, Tag, post_tags
from app.types import utcnow

# A post's page, and the editor's preview of it, end with this many related posts and
# this many of the latest.
RELATED_POSTS = 3
LATEST_POSTS = 3


def published():
    """A select of posts visible to readers now, newest first."""
    return (
        select(Post)
        .where(Post.published_at.is_not(None), Post.published_at <= utcnow())
        .order_by(Post.published_at.desc(), Post.id.desc())
    )


def content_version():
    """Changes whenever what readers see may have: a post added, edited (the editor and the
    importer set updated_at, tags included), deleted, unpublished, or a scheduled one live."""
    visible = case((Post.published_at <= utcnow(), 1), else_=0)
    counts = select(func.count(Post.id), func.max(Post.updated_at), func.sum(visible))
    return ":".join(str(value) for value in db.session.execute(counts).one())


def latest(limit, exclude=()):
    query = published().limit(limit)
    if exclude:
        query = query.where(Post.id.not_in([post.id for post in exclude]))
    return db.session.scalars(query).all()


def page_of_posts(page, per_page, tag=None):
    query = published()
    if tag is not None:
        query = query.where(Post.tags.contains(tag))
    return db.paginate(query, page=page, per_page=per_page, error_out=True, count=True)


def every_post_page(per_page):
    """A page (number read from the request) of every post, for the editors' list.

    Drafts, then scheduled, then published; newest first within each.
    """
    stage = case(
        (Post.published_at.is_(None), 0),
        (Post.published_at > utcnow(), 1),
        else_=2,
    )
    query = select(Post).order_by(
        stage, Post.published_at.desc(), Post.updated_at.desc(), Post.id.desc()
    )
    return db.paginate(query, per_page=per_page, max_per_page=per_page)


def published_post(slug):
    return db.session.scalars(published().where(Post.slug == slug)).first()


def tag_by_slug(slug):
    return db.session.scalars(select(Tag).where(Tag.slug == slug)).first()


def related(post, limit=3):
    """Posts sharing the most tags with this one, then the most recent, never the post itself."""
    tag_ids = [tag.id for tag in post.tags]
    shared = func.count(post_tags.c.tag_id).label("shared")
    by_tags = (
        published()
        .join(post_tags, post_tags.c.post_id == Post.id)
        .where(post_tags.c.tag_id.in_(tag_ids), Post.id != post.id)
        .group_by(Post.id)
        .order_by(None)
        .order_by(shared.desc(), Post.published_at.desc(), Post.id.desc())
        .limit(limit)
    )
    found = list(db.session.scalars(by_tags)) if tag_ids else []
    if len(found) < limit:
        seen = {post.id, *(item.id for item in found)}
        fill = published().where(Post.id.not_in(seen)).limit(limit - len(found))
        found.extend(db.session.scalars(fill))
    return found


def tags_in_use():
    """Tags with at least one published post, with that count, alphabetically."""
    visible = published().with_only_columns(Post.id).order_by(None).subquery()
    query = (
        select(Tag, func.count(post_tags.c.post_id))
        .join(post_tags, post_tags.c.tag_id == Tag.id)
        .where(post_tags.c.post_id.in_(select(visible.c.id)))
        .group_by(Tag.id)
        .order_by(Tag.name)
    )
    return db.session.execute(query).all()


def last_change():
    """When any published post last changed: the feed's and the sitemap's <updated>."""
    visible = published().order_by(None).subquery()
    return db.session.scalar(select(func.max(visible.c.updated_at)))
