import secrets
from datetime import datetime

from flask import g
from flask_login import UserMixin
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.accounts import passwords
from app.extensions import db
from app.types import UTCDateTime, utcnow

ROLES = ("admin", "editor")
# The longest IPv6 address in text is 45 characters; a proxy may add a zone or a port.
ADDRESS_LENGTH = 100
# app.logs.pseudonym: the reference the logs give an address too.
EMAIL_HASH_LENGTH = 16


def new_token():
    return secrets.token_urlsafe(32)


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(16), default="editor")
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    sessions: Mapped[list["StaffSession"]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    @property
    def is_admin(self):
        return self.role == "admin"

    @property
    def display_name(self):
        return self.name or self.email

    def set_password(self, password):
        """Hash the password (scrypt) and end every session opened with the old one."""
        self.password_hash = passwords.hash_password(password)
        for session in self.sessions:
            session.revoke()

    def check_password(self, password):
        return passwords.check_password(self.password_hash, password)

    def get_id(self):
        """Flask-Login stores this in the cookie: the token of the current login, not the id."""
        return g.staff_session.token

    def __repr__(self):
        return f"<User {self.email} {self.role}>"


class StaffSession(db.Model):
    """A login. The browser's session cookie holds only its random token, so ending it here
    (logout, disabled account, new password) ends it for every copy of that cookie."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True, default=new_token)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user_agent: Mapped[str] = mapped_column(String(300), default="")

    user: Mapped[User] = relationship(back_populates="sessions", lazy="joined")

    @property
    def is_valid(self):
        return self.revoked_at is None and self.user.is_active

    def revoke(self):
        if self.revoked_at is None:
            self.revoked_at = utcnow()


class LoginLockout(db.Model):
    """A login limit that refused an attempt: shown to admins, kept for a while (throttle.py).

    What was typed in the address field is never kept: it is sometimes a password, typed in
    the wrong field. A lock-out names the account it matched, or else holds a keyed hash of
    the text, which tells lock-outs of one address apart without revealing it."""

    __tablename__ = "login_lockouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    locked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    email_hash: Mapped[str | None] = mapped_column(String(EMAIL_HASH_LENGTH))
    scope: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))

    account: Mapped[User | None] = relationship()
