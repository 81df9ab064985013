"""Template globals and filters shared by every page."""

from flask import current_app, request, url_for

from app import dates
from app.types import utcnow


def init_app(app):
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    app.context_processor(site_context)
    app.jinja_env.globals["absolute_url"] = absolute_url
    app.jinja_env.globals["canonical_url"] = canonical_url
    app.jinja_env.filters["date"] = dates.long_date
    app.jinja_env.filters["isodate"] = dates.iso
    app.jinja_env.filters["stamp"] = dates.stamp
    app.jinja_env.filters["relative"] = dates.relative


def site_context():
    config = current_app.config
    return {
        "site": {
            "name": config["SITE_NAME"],
            "tagline": config["SITE_TAGLINE"],
            "email": config["SITE_EMAIL"],
            "address": config["SITE_ADDRESS"],
            "url": config["SITE_URL"],
        },
        "current_year": utcnow().year,
    }


def absolute_url(endpoint, **values):
    """A URL on the public site address (SITE_URL), whatever host the request came in on."""
    return current_app.config["SITE_URL"] + url_for(endpoint, **values)


def canonical_url():
    """This page's address on SITE_URL, keeping only the query parameters that change content."""
    values = dict(request.view_args or {})
    page = request.args.get("page", type=int)
    if page and page > 1:
        values["page"] = page
    return absolute_url(request.endpoint, **values)
