import re

from flask import Blueprint, abort, current_app, render_template, request

from app.posts import queries
from app.posts.queries import LATEST_POSTS, RELATED_POSTS
from app.types import utcnow

blueprint = Blueprint("posts", __name__)

FEED_ENTRIES = 20
PAGE_NUMBER = re.compile(r"[1-9][0-9]{0,5}")


@blueprint.get("/posts/")
def index():
    posts = queries.page_of_posts(current_page(), current_app.config["POSTS_PER_PAGE"])
    return render_template("posts/index.html", posts=posts, tags=queries.tags_in_use())


@blueprint.get("/posts/<slug>")
def detail(slug):
    post = queries.published_post(slug) or abort(404)
    related = queries.related(post, RELATED_POSTS)
    return render_template(
        "posts/detail.html",
        post=post,
        related=related,
        latest=queries.latest(LATEST_POSTS, exclude=[post, *related]),
    )


@blueprint.get("/tags/<slug>")
def tag(slug):
    tag = queries.tag_by_slug(slug) or abort(404)
    posts = queries.page_of_posts(current_page(), current_app.config["POSTS_PER_PAGE"], tag=tag)
    if not posts.total:
        abort(404)
    return render_template("posts/tag.html", tag=tag, posts=posts)


@blueprint.get("/feed.xml")
def feed():
    updated = queries.last_change() or utcnow()
    body = render_template("posts/feed.xml", posts=queries.latest(FEED_ENTRIES), updated=updated)
    return body, {"Content-Type": "application/atom+xml; charset=utf-8"}


@blueprint.get("/sitemap.xml")
def sitemap():
    body = render_template(
        "posts/sitemap.xml", posts=queries.latest(None), updated=queries.last_change()
    )
    return body, {"Content-Type": "application/xml; charset=utf-8"}


def current_page():
    """The ?page= number; anything but a positive integer is a 404, not a 500."""
    raw = request.args.get("page", "1")
    if not PAGE_NUMBER.fullmatch(raw):
        abort(404)
    return int(raw)
