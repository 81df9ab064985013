"""HTTP caching for public pages: shared-cache friendly, validated by ETag and Last-Modified."""

from flask import current_app, request

PUBLIC_BLUEPRINTS = {"public", "posts"}


def init_app(app):
    # Registered after Flask-Compress, so it runs before it: the ETag describes the
    # uncompressed body and Flask-Compress derives one per encoding from it.
    app.after_request(cache_public_pages)


def cache_public_pages(response):
    if request.blueprint not in PUBLIC_BLUEPRINTS or request.method not in {"GET", "HEAD"}:
        return response
    if response.status_code != 200:
        return response
    response.cache_control.public = True
    response.cache_control.max_age = current_app.config["PUBLIC_CACHE_SECONDS"]
    response.add_etag()
    return response.make_conditional(request)
