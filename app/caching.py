"""HTTP caching for public pages: shared-cache friendly, validated by a strong ETag.

There is no Last-Modified: a page lists other posts, and unpublishing or deleting one
changes the page without any date that moves forward, so If-Modified-Since could be
answered 304 with a stale page. The ETag describes the body itself and cannot go stale.
"""

import hashlib
import re

from flask import current_app, request

PUBLIC_BLUEPRINTS = {"public", "posts", "leads"}
# Elements marked data-volatile (the contact form's signed render time) change on every
# render without changing the page, so the ETag ignores them and revalidation still works.
VOLATILE_ELEMENT = re.compile(rb"<input data-volatile [^>]*>")


def init_app(app):
    # Registered after Flask-Compress, so it runs before it: the ETag describes the
    # uncompressed body and Flask-Compress derives one per encoding from it.
    app.after_request(cache_public_pages)


def cache_public_pages(response):
    if request.blueprint not in PUBLIC_BLUEPRINTS or request.method not in {"GET", "HEAD"}:
        return response
    if response.status_code != 200 or "Cache-Control" in response.headers:
        return response
    response.cache_control.public = True
    response.cache_control.max_age = current_app.config["PUBLIC_CACHE_SECONDS"]
    stable_body = VOLATILE_ELEMENT.sub(b"", response.get_data())
    response.set_etag(hashlib.sha1(stable_body, usedforsecurity=False).hexdigest())
    return response.make_conditional(request)
