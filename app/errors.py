"""Styled error pages; a server error rolls the session back before rendering."""

from flask import render_template
from werkzeug.exceptions import HTTPException

from app.extensions import db

PAGES = {404: "errors/404.html", 500: "errors/500.html"}


def init_app(app):
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(500, server_error)


def http_error(error):
    template = PAGES.get(error.code, "errors/generic.html")
    return render_template(template, error=error), error.code


def server_error(error):
    db.session.rollback()
    return render_template("errors/500.html", error=error), 500
