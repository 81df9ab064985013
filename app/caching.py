"""HTTP caching for public pages: shared-cache friendly, revalidated before anything renders.

A page's ETag is derived from what it can show: the code and settings the process runs,
the posts (app.posts.queries.content_version) and the URL. A revalidation therefore costs
one small query and no render. The contact form's signed render time changes with every
render, and plays no part.

There is no Last-Modified: a page lists other posts, and unpublishing or deleting one
changes the page without any date that moves forward, so If-Modified-Since could be
answered 304 with a stale page.
"""

import hashlib
from functools import cache
from pathlib import Path

from flask import current_app, g, request

from app.posts.queries import content_version

PUBLIC_BLUEPRINTS = {"public", "posts", "leads"}
# Flask-Compress appends the encoding to a strong ETag: "<etag>:gzip".
ENCODINGS = ("gzip", "br", "deflate", "zstd")
# What every public page is made from, besides the database.
CODE_FOLDERS = ("app", "templates", "static")
SITE_SETTINGS = ("SITE_URL", "SITE_NAME", "SITE_TAGLINE", "SITE_EMAIL", "SITE_ADDRESS")


def init_app(app):
    app.before_request(answer_not_modified)
    # Registered after Flask-Compress, so it runs before it: Flask-Compress then derives an
    # ETag per encoding from this one.
    app.after_request(cache_public_pages)


def is_public_read():
    return request.blueprint in PUBLIC_BLUEPRINTS and request.method in {"GET", "HEAD"}


def answer_not_modified():
    """A 304 for a client (or nginx) whose copy is current, before the view runs."""
    if not is_public_read() or not request.if_none_match:
        return None
    etag = page_etag()
    for variant in (etag, *(f"{etag}:{encoding}" for encoding in ENCODINGS)):
        if request.if_none_match.contains_weak(variant):
            response = current_app.response_class(status=304)
            response.set_etag(variant)
            set_public_cache_control(response)
            return response
    return None


def cache_public_pages(response):
    if not is_public_read() or response.status_code != 200:
        return response
    if "Cache-Control" in response.headers:
        return response
    set_public_cache_control(response)
    response.set_etag(page_etag())
    return response.make_conditional(request)


def set_public_cache_control(response):
    response.cache_control.public = True
    response.cache_control.max_age = current_app.config["PUBLIC_CACHE_SECONDS"]


def page_etag():
    if "page_etag" not in g:
        config = current_app.config
        parts = [
            code_version(current_app.root_path),
            *(str(config[name]) for name in SITE_SETTINGS),
            content_version(),
            request.full_path,
        ]
        g.page_etag = sha1("\0".join(parts))
    return g.page_etag


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
