"""Logging staff in and out. Each login is a StaffSession row; the cookie holds its token."""

import logging
from urllib.parse import urlsplit

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select

from app.accounts import throttle
from app.accounts.models import StaffSession
from app.accounts.services import authenticate, normalised_email
from app.extensions import client_network, db, login_manager
from app.logs import pseudonym
from app.staff.forms import LoginForm
from app.types import utcnow

blueprint = Blueprint("auth", __name__)
log = logging.getLogger("app.auth")

LOGIN_FAILED = "That email address and password do not match an active account."
LOGIN_REFUSED = "There have been too many attempts to log in. Wait {wait}, then try again."

login_manager.login_view = "staff.auth.login"
login_manager.session_protection = None  # the server-side session row is the protection


@login_manager.user_loader
def load_user(token):
    staff_session = db.session.scalars(
        select(StaffSession).where(StaffSession.token == token)
    ).first()
    if staff_session is None or not staff_session.is_valid:
        return None
    g.staff_session = staff_session
    return staff_session.user


@blueprint.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm(next=request.args.get("next", ""))
    if request.method == "GET":
        return render_template("staff/login.html", form=form)
    if not form.validate():
        return failed(form)
    email, address = normalised_email(form.email.data), client_network()
    refusal = throttle.count_attempt(email, address)
    if refusal:
        return refused(form, refusal)
    user = authenticate(email, form.password.data)
    if not user:
        return failed(form)
    throttle.forget_attempts(email, address)
    start_session(user)
    return redirect(safe_next(form.next.data), code=303)


def failed(form):
    account = normalised_email(form.email.data or "")
    log.warning("login failed", extra={"account": pseudonym(account)})
    form.form_errors.append(LOGIN_FAILED)
    return render_template("staff/login.html", form=form), 401


def refused(form, refusal):
    form.form_errors.append(LOGIN_REFUSED.format(wait=refusal.wait))
    page = render_template("staff/login.html", form=form)
    return page, 429, {"Retry-After": str(refusal.retry_after)}


@blueprint.post("/logout")
def logout():
    end_session()
    flash("You have logged out.", "success")
    return redirect(url_for("staff.auth.login"), code=303)


def start_session(user):
    """A fresh session (nothing carried over from before login) bound to a new server row."""
    session.clear()
    staff_session = StaffSession(user=user, user_agent=request.user_agent.string[:300])
    db.session.add(staff_session)
    user.last_login_at = utcnow()
    db.session.commit()
    g.staff_session = staff_session
    login_user(user)
    session.permanent = True


def end_session():
    staff_session = g.get("staff_session")
    if staff_session is not None:
        staff_session.revoke()
        db.session.commit()
    logout_user()
    session.clear()


def safe_next(target):
    """Only a path on this site: never another host, scheme or protocol-relative URL."""
    default = url_for("staff.dashboard.index")
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(character) < 32 for character in target):
        return default
    return target
