from functools import wraps

from flask import abort
from flask_login import current_user


def admin_required(view):
    """Only admins may do this; an editor gets a 403 that says why."""

    @wraps(view)
    def guarded(*args, **kwargs):
        if not current_user.is_admin:
            abort(403, "Only an administrator can do this. Ask an admin if it needs doing.")
        return view(*args, **kwargs)

    return guarded
