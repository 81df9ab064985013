"""Styled error pages; a server error rolls the session back before rendering."""

from flask import render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.extensions import db

PAGES = {404: "errors/404.html", 500: "errors/500.html"}


def init_app(app):
    app.register_error_handler(CSRFError, csrf_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(500, server_error)


# An error page answers one request: no cache, shared or private, may keep it.
NO_STORE = ("Cache-Control", "no-store")

FRIENDLY_DESCRIPTIONS = {
    413: "What you sent is larger than this page accepts. Shorten it and try again.",
    429: "You have sent several requests in a short time. Please wait a few minutes and try again.",
}


def http_error(error):
    template = PAGES.get(error.code, "errors/generic.html")
    description = error.description
    if description == type(error).description or error.code == 429:
        description = FRIENDLY_DESCRIPTIONS.get(error.code, description)
    response = render_template(template, error=error, description=description)
    headers = [(name, value) for name, value in error.get_headers() if name != "Content-Type"]
    return response, error.code, [*headers, NO_STORE]


def csrf_error(error):
    description = (
        "This form expired or was sent from another page, so nothing was changed. "
        "Go back, reload the page and try again."
    )
    response = render_template("errors/generic.html", error=error, description=description)
    return response, 400, [NO_STORE]


def server_error(error):
    db.session.rollback()
    return render_template("errors/500.html", error=error), 500, [NO_STORE]
