"""Sessions exist only in the staff area: public pages neither read nor write one."""

from flask.sessions import SecureCookieSessionInterface


class StaffOnlySessionInterface(SecureCookieSessionInterface):
    """Outside SESSION_COOKIE_PATH a request gets Flask's null session: nothing is loaded,
    no cookie is set and no `Vary: Cookie` is added, so public pages stay cacheable.
    Writing to it raises, so a public page cannot start a session by mistake."""

    def open_session(self, app, request):
        prefix = app.config["SESSION_COOKIE_PATH"].rstrip("/")
        if request.path != prefix and not request.path.startswith(prefix + "/"):
            return None
        return super().open_session(app, request)


def init_app(app):
    app.session_interface = StaffOnlySessionInterface()
