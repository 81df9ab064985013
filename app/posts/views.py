import re

from flask import Blueprint, abort, current_app, make_response, render_template, request

from app.posts import queries
from app.types import utcnow

blueprint = Blueprint("posts", __name__)

RELATED_POSTS = 3
LATEST_POSTS = 3
FEED_ENTRIES = 20
PAGE_NUMBER = re.compile(r"[1-9][0-9]{0,5}")


@blueprint.get("/posts/")
def index():
    posts = queries.page_of_posts(current_page(), current_app.config["POSTS_PER_PAGE"])
    return with_last_modified(
        render_template("posts/index.html", posts=posts, tags=queries.tags_in_use()),
        queries.last_change(),
    )


@blueprint.get("/posts/<slug>")
def detail(slug):
    post = queries.published_post(slug) or abort(404)
    related = queries.related(post, RELATED_POSTS)
    page = render_template(
        "posts/detail.html",
        post=post,
        related=related,
        latest=queries.latest(LATEST_POSTS, exclude=[post, *related]),
    )
    return with_last_modified(page, queries.last_change())


@blueprint.get("/tags/<slug>")
def tag(slug):
    tag = queries.tag_by_slug(slug) or abort(404)
    posts = queries.page_of_posts(current_page(), current_app.config["POSTS_PER_PAGE"], tag=tag)
    if not posts.total:
        abort(404)
    return with_last_modified(
        render_template("posts/tag.html", tag=tag, posts=posts), queries.last_change()
    )


@blueprint.get("/feed.xml")
def feed():
    updated = queries.last_change()
    body = render_template(
        "posts/feed.xml", posts=queries.latest(FEED_ENTRIES), updated=updated or utcnow()
    )
    response = make_response(body)
    response.mimetype = "application/atom+xml"
    return with_last_modified(response, updated)


@blueprint.get("/sitemap.xml")
def sitemap():
    body = render_template(
        "posts/sitemap.xml", posts=queries.latest(None), updated=queries.last_change()
    )
    response = make_response(body)
    response.mimetype = "application/xml"
    return with_last_modified(response, queries.last_change())


def current_page():
    """The ?page= number; anything but a positive integer is a 404, not a 500."""
    raw = request.args.get("page", "1")
    if not PAGE_NUMBER.fullmatch(raw):
        abort(404)
    return int(raw)


def with_last_modified(page, moment):
    response = make_response(page)
    if moment is not None:
        response.last_modified = moment
    return response
