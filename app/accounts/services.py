"""Staff accounts: the `flask staff` commands manage them, the login form checks them."""

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select

from app.accounts import passwords
from app.accounts.models import ROLES, User
from app.extensions import db

MIN_PASSWORD_LENGTH = 12


class AccountError(ValueError):
    """The request cannot be done; the message says why."""


def normalised_email(email):
    """How an address typed at login or on the command line is compared with accounts'."""
    return email.strip().lower()


def find_user(email):
    return db.session.scalars(
        select(User).where(func.lower(User.email) == normalised_email(email))
    ).first()


def require_user(email):
    user = find_user(email)
    if user is None:
        raise AccountError(f"No staff account has the address {email}.")
    return user


def authenticate(email, password):
    """The active account with this address and password, or None."""
    user = find_user(email)
    if user is None:
        # Spend as long as a wrong password would, so timing does not reveal the address.
        passwords.check_against_nothing(password)
        return None
    if not user.check_password(password) or not user.is_active:
        return None
    return user


def check_password_strength(password):
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters.")


def create_user(email, password, role="editor", name=""):
    if role not in ROLES:
        raise AccountError(f"The role must be one of: {', '.join(ROLES)}.")
    try:
        email = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise AccountError(f"{email} is not a valid email address: {error}") from error
    if find_user(email):
        raise AccountError(f"A staff account with the address {email} already exists.")
    check_password_strength(password)
    user = User(email=email, role=role, name=name)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


def set_password(email, password):
    user = require_user(email)
    check_password_strength(password)
    user.set_password(password)
    db.session.commit()
    return user


def disable_user(email):
    user = require_user(email)
    user.is_active = False
    for staff_session in user.sessions:
        staff_session.revoke()
    db.session.commit()
    return user


def all_users():
    return db.session.scalars(select(User).order_by(User.email)).all()
