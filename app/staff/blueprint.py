"""The staff area: every page behind a login, none of it cacheable."""

from flask import Blueprint, flash, redirect, request, url_for
from flask_login import current_user

from app.staff import auth, dashboard, leads, posts

blueprint = Blueprint("staff", __name__, url_prefix="/staff")
for child in (auth, dashboard, leads, posts):
    blueprint.register_blueprint(child.blueprint)

OPEN_ENDPOINTS = {"staff.auth.login"}
STAFF_NAVIGATION = [
    ("staff.dashboard.index", "Dashboard"),
    ("staff.leads.inbox", "Leads"),
    ("staff.posts.index", "Posts"),
]


@blueprint.before_request
def require_login():
    """One guard for the whole area, so no page can forget its own check."""
    if request.endpoint in OPEN_ENDPOINTS or current_user.is_authenticated:
        return None
    flash("Please log in to see that page.", "info")
    return redirect(url_for("staff.auth.login", next=request.full_path.rstrip("?")))


@blueprint.context_processor
def navigation():
    return {"staff_navigation": STAFF_NAVIGATION}


@blueprint.after_request
def never_cache(response):
    response.cache_control.no_store = True
    response.cache_control.private = True
    response.vary.add("Cookie")
    return response
