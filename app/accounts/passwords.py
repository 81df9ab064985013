"""Password hashes, made with the method PASSWORD_HASH_METHOD names (scrypt).

Only the test suite sets a cheap method, to keep its many logins fast; the environment
cannot change it. A stored hash names its own method, so checking never depends on it.
"""

import secrets
from functools import cache

from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash


def hash_password(password):
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def check_password(password_hash, password):
    return check_password_hash(password_hash, password)


def check_against_nothing(password):
    """Spend as long as checking a real account's password, and fail."""
    check_password_hash(unused_hash(current_app.config["PASSWORD_HASH_METHOD"]), password)


@cache
def unused_hash(method):
    return generate_password_hash(secrets.token_hex(16), method=method)
