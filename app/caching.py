"""HTTP caching for public pages: shared-cache friendly, revalidated before anything renders.

A page's ETag is derived from what it can show: the code and settings the process runs,
the posts (app.posts.queries.content_version) and the URL. A revalidation therefore costs
at most one small query and no render. Each process reads the posts' version at most once
every CONTENT_CHECK_SECONDS: a change reaches public pages that much later, and a busy
page costs no query at all. The contact form's signed render time changes with every
render, and plays no part.

Because the ETag names everything a page is made of, each process also keeps the pages it
rendered by ETag (PAGE_CACHE_SIZE of them, least recently used out first): a reader whose
page is there gets it without a render, with a freshly signed form time put in.

There is no Last-Modified: a page lists other posts, and unpublishing or deleting one
changes the page without any date that moves forward, so If-Modified-Since could be
answered 304 with a stale page.
"""

import hashlib
import re
import threading
from functools import cache
from pathlib import Path

from cachetools import LRUCache, TTLCache, cached
from flask import current_app, g, request

from app.extensions import DATABASE_UNAVAILABLE, db
from app.leads.protection import new_render_token
from app.posts.queries import content_version

PUBLIC_BLUEPRINTS = {"public", "posts", "leads"}
# Flask-Compress appends the encoding to a strong ETag: "<etag>:gzip".
ENCODINGS = ("gzip", "br", "deflate", "zstd")
# What every public page is made from, besides the database.
CODE_FOLDERS = ("app", "templates", "static")
SITE_SETTINGS = ("SITE_URL", "SITE_NAME", "SITE_TAGLINE", "SITE_EMAIL", "SITE_ADDRESS")
# The contact form's signed render time, as a stored page holds it.
RENDER_TOKEN = re.compile(rb'(name="contact-rendered_at" type="hidden" value=")[^"]*"')
TOKEN_SLOT = rb'\1@render-token@"'


class PageStore:
    """Rendered pages by ETag, shared by the threads of one process."""

    def __init__(self, size):
        self.pages = LRUCache(maxsize=size) if size else None
        self.lock = threading.Lock()

    def get(self, etag):
        if self.pages is None:
            return None
        with self.lock:
            return self.pages.get(etag)

    def put(self, etag, response):
        if self.pages is None or response.direct_passthrough or response.is_streamed:
            return
        body = RENDER_TOKEN.sub(TOKEN_SLOT, response.get_data())
        with self.lock:
            self.pages[etag] = (body, response.content_type)


def init_app(app):
    app.extensions["page_store"] = PageStore(app.config["PAGE_CACHE_SIZE"])
    app.extensions["content_version"] = remembered_content_version(
        app.config["CONTENT_CHECK_SECONDS"]
    )
    app.before_request(answer_not_modified)
    app.before_request(answer_from_store)
    # Registered after Flask-Compress, so it runs before it: Flask-Compress then derives an
    # ETag per encoding from this one.
    app.after_request(cache_public_pages)


def remembered_content_version(seconds):
    """content_version(), remembered for `seconds` by the threads of one process."""
    if not seconds:
        return content_version
    remember = cached(
        TTLCache(maxsize=1, ttl=seconds), key=lambda: "version", lock=threading.Lock()
    )
    return remember(content_version)


def is_public_read():
    return request.blueprint in PUBLIC_BLUEPRINTS and request.method in {"GET", "HEAD"}


def answer_not_modified():
    """A 304 for a client (or nginx) whose copy is current, before the view runs."""
    if not is_public_read() or not request.if_none_match:
        return None
    etag = page_etag()
    if etag is None:
        return None
    for variant in (etag, *(f"{etag}:{encoding}" for encoding in ENCODINGS)):
        if request.if_none_match.contains_weak(variant):
            response = current_app.response_class(status=304)
            response.set_etag(variant)
            set_public_cache_control(response)
            return response
    return None


def answer_from_store():
    if not is_public_read() or page_etag() is None:
        return None
    stored = current_app.extensions["page_store"].get(page_etag())
    if stored is None:
        return None
    body, content_type = stored
    g.page_from_store = True
    fresh_token = new_render_token().encode()
    return current_app.response_class(
        body.replace(b"@render-token@", fresh_token), content_type=content_type
    )


def cache_public_pages(response):
    if not is_public_read() or response.status_code != 200:
        return response
    if "Cache-Control" in response.headers or page_etag() is None:
        return response
    set_public_cache_control(response)
    response.set_etag(page_etag())
    if not g.get("page_from_store"):
        current_app.extensions["page_store"].put(page_etag(), response)
    return response.make_conditional(request)


def set_public_cache_control(response):
    response.cache_control.public = True
    response.cache_control.max_age = current_app.config["PUBLIC_CACHE_SECONDS"]


def page_etag():
    """None while the database cannot be reached: the view answers (a spooled lead's thanks
    page still shows), and nothing is validated or stored."""
    if "page_etag" not in g:
        try:
            version = current_app.extensions["content_version"]()
        except DATABASE_UNAVAILABLE:
            db.session.rollback()
            g.page_etag = None
        else:
            g.page_etag = sha1("\0".join([site_version(), version, request.full_path]))
    return g.page_etag


def site_version():
    config = current_app.config
    settings = (str(config[name]) for name in SITE_SETTINGS)
    return "\0".join([code_version(current_app.root_path), *settings])


@cache
def code_version(root_path):
    """A digest of the code, templates and static files: a deploy changes every page's ETag."""
    project = Path(root_path).parent
    digest = hashlib.sha1(usedforsecurity=False)
    for folder in CODE_FOLDERS:
        for path in sorted((project / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(project)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def sha1(text):
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
