"""Styled error pages; a server error rolls the session back before rendering."""

from flask import current_app, g, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, ServiceUnavailable

from app.extensions import DATABASE_UNAVAILABLE, cause_of, db, login_manager

PAGES = {404: "errors/404.html", 500: "errors/500.html"}


def init_app(app):
    app.register_error_handler(CSRFError, csrf_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(500, server_error)
    for error in DATABASE_UNAVAILABLE:
        app.register_error_handler(error, database_unavailable)


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
    return response, error.code, headers_of(error)


def headers_of(error):
    """The error's own headers (Retry-After, Allow...) and no-store; the page sets its type."""
    headers = [(name, value) for name, value in error.get_headers() if name != "Content-Type"]
    return [*headers, NO_STORE]


def csrf_error(error):
    description = (
        "This form expired or was sent from another page, so nothing was changed. "
        "Go back, reload the page and try again."
    )
    response = render_template("errors/generic.html", error=error, description=description)
    return response, 400, [NO_STORE]


def server_error(error):
    db.session.rollback()
    page = render_template("errors/500.html", error=error, request_id=g.get("request_id"))
    return page, 500, [NO_STORE]


DATABASE_DOWN = (
    "We cannot reach our database at the moment, so this page cannot be shown. "
    "Nothing you saved before is lost. Please try again in a minute."
)


def database_unavailable(error):
    """The database is unreachable or dropped the connection: a 503 that says so, not a 500."""
    # The first line of the driver's message only: the statement's parameters may hold
    # what a visitor typed.
    cause = cause_of(error)
    reason = (str(cause).splitlines() or [type(cause).__name__])[0]
    current_app.logger.error("Database unavailable: %s", reason)
    db.session.remove()
    # Every render asks Flask-Login for the user, whose session row is in the database: this
    # page is shown as to an anonymous visitor, without logging anyone out.
    login_manager._update_request_context_with_user()
    unavailable = ServiceUnavailable(DATABASE_DOWN, retry_after=30)
    response = render_template("errors/generic.html", error=unavailable, description=DATABASE_DOWN)
    return response, 503, headers_of(unavailable)
