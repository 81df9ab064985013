"""Staff login throttling. Each attempt is counted before its password is checked, in one
atomic step in the rate limit store, so guesses sent in parallel cannot all pass a check
that only counted them afterwards.

Two limits, each in the form of a rate limit string ("5 per 15 minutes"):
LOGIN_ACCOUNT_RATE_LIMIT counts attempts at one account from one client address, so whoever
locks an account out locks it only for their own address; LOGIN_RATE_LIMIT, a wider one,
counts every attempt from one address, whichever account it names.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from limits import parse_many
from sqlalchemy import delete, select
from sqlalchemy.orm import joinedload

from app import counters
from app.accounts.models import ADDRESS_LENGTH, LoginLockout
from app.accounts.services import find_user
from app.dates import wait_in_words
from app.extensions import db, limiter, seconds_until, shared_key
from app.logs import pseudonym
from app.types import utcnow

log = logging.getLogger("app.auth")

ACCOUNT = "account"
ADDRESS = "address"
LIMIT_SETTINGS = {ACCOUNT: "LOGIN_ACCOUNT_RATE_LIMIT", ADDRESS: "LOGIN_RATE_LIMIT"}
KEEP_LOCK_OUTS = timedelta(days=30)
LOCK_OUTS_SHOWN = 20


@dataclass(frozen=True)
class Refusal:
    """An attempt refused by the limit of `scope`, which lets attempts in again after
    `retry_after` seconds."""

    scope: str
    retry_after: int

    @property
    def wait(self):
        return wait_in_words(self.retry_after)


def count_attempt(email, address):
    """Count one login attempt under both limits: a Refusal if a limit is used up, else None.
    The narrower limit is counted first, so a refusal names it when both are used up."""
    if not limiter.enabled:
        return None
    for scope in (ACCOUNT, ADDRESS):
        for item in scope_limits(scope):
            identifiers = key_parts(scope, email, address)
            if not counters.strategy("hit", item, *identifiers):
                refusal = Refusal(scope, seconds_until_reset(item, identifiers))
                note_lock_out(refusal, item, email, address)
                return refusal
    return None


def forget_attempts(email, address):
    """After a successful login, that account's count from that address starts again. (The
    address's own count stays: otherwise logging in to one's own account would reset it.)"""
    if not limiter.enabled:
        return
    for item in scope_limits(ACCOUNT):
        counters.strategy("clear", item, *key_parts(ACCOUNT, email, address))
        counters.strategy("clear", marker(item), *noted_key(ACCOUNT, email, address))


def recent_lock_outs(since):
    return db.session.scalars(
        select(LoginLockout)
        .options(joinedload(LoginLockout.account))
        .where(LoginLockout.locked_at >= since)
        .order_by(LoginLockout.locked_at.desc(), LoginLockout.id.desc())
        .limit(LOCK_OUTS_SHOWN)
    ).all()


def scope_limits(scope):
    return parse_many(current_app.config[LIMIT_SETTINGS[scope]])


def key_parts(scope, email, address):
    """The address comes before the email: it cannot hold the "/" that joins the parts."""
    account = [email] if scope == ACCOUNT else []
    return tuple(shared_key(f"login-{scope}", address, *account))


def noted_key(scope, email, address):
    return (*key_parts(scope, email, address), "noted")


def marker(item):
    """One of this limit's windows: the first refusal in it notes the lock-out, later ones
    are the same lock-out."""
    return type(item)(1, item.multiples)


def seconds_until_reset(item, identifiers):
    return seconds_until(counters.strategy("get_window_stats", item, *identifiers).reset_time)


def note_lock_out(refusal, item, email, address):
    """Log and record a lock-out once, not once for each attempt it refuses."""
    identifiers = noted_key(refusal.scope, email, address)
    if not counters.strategy("hit", marker(item), *identifiers):
        return
    # The address typed is personal data: the log names the account by a keyed hash.
    log.warning(
        "login locked out by the %s limit (%s)",
        refusal.scope,
        item,
        extra={"account": pseudonym(email), "limit_scope": refusal.scope},
    )
    record_lock_out(refusal, email, address)


def record_lock_out(refusal, email, address):
    """Record the account `email` names, or a keyed hash of it: never the text itself."""
    now = utcnow()
    db.session.execute(delete(LoginLockout).where(LoginLockout.locked_at < now - KEEP_LOCK_OUTS))
    account = find_user(email)
    db.session.add(
        LoginLockout(
            locked_at=now,
            locked_until=now + timedelta(seconds=refusal.retry_after),
            account_id=account.id if account else None,
            email_hash=None if account else pseudonym(email),
            scope=refusal.scope,
            address=address[:ADDRESS_LENGTH],
        )
    )
    db.session.commit()
