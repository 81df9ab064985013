"""Fingerprinted static URLs: each carries its content hash, so it can be cached forever."""

import hashlib
from functools import lru_cache
from pathlib import Path

from flask import current_app, request, url_for

ONE_YEAR = 365 * 24 * 3600
UNVERSIONED_MAX_AGE = 3600


def init_app(app):
    app.jinja_env.globals["asset_url"] = asset_url
    app.after_request(cache_static_assets)


def asset_url(filename, **values):
    """URL of a file under static/, versioned by its content (unversioned if it is missing)."""
    version = current_version(filename)
    if version is not None:
        values["v"] = version
    return url_for("static", filename=filename, **values)


@lru_cache(maxsize=512)
def digest(path, mtime_ns, size):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def cache_static_assets(response):
    if request.endpoint != "static" or response.status_code not in {200, 304}:
        return response
    if response.mimetype in current_app.config["COMPRESS_MIMETYPES"]:
        # Buffer text assets (they are small): Flask-Compress would otherwise compress the
        # file as a stream and never close it.
        response.direct_passthrough = False
        response.make_sequence()
    version = request.args.get("v")
    response.cache_control.no_cache = None
    response.cache_control.public = True
    if version and version == current_version(request.view_args["filename"]):
        response.cache_control.max_age = ONE_YEAR
        response.cache_control.immutable = True
    else:
        response.cache_control.max_age = UNVERSIONED_MAX_AGE
    return response


def current_version(filename):
    path = Path(current_app.static_folder) / filename
    try:
        stat = path.stat()
    except OSError:
        return None
    return digest(str(path), stat.st_mtime_ns, stat.st_size)
