"""Application factory."""

from flask import Flask

from app import (
    assets,
    caching,
    cli,
    config,
    errors,
    extensions,
    logs,
    routing,
    security,
    sessions,
    templating,
)
from app.extensions import csrf
from app.leads import delivery


def create_app(test_config=None):
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder="../templates",
        static_folder="../static",
    )
    config.load(app, test_config)
    # First: its before_request runs before any other, its after_request last (final status).
    logs.init_app(app)
    extensions.init_app(app)
    sessions.init_app(app)
    routing.init_app(app)
    register_blueprints(app)
    errors.init_app(app)
    templating.init_app(app)
    assets.init_app(app)
    caching.init_app(app)
    security.init_app(app)
    cli.init_app(app)
    # LEADS_DELIVER_IN_PROCESS: a first request starts the outbox thread, so CLI commands run none.
    delivery.init_app(app)
    return app


def register_blueprints(app):
    from app.health import blueprint as health
    from app.leads.views import blueprint as leads
    from app.posts.uploads import blueprint as media
    from app.posts.views import blueprint as posts
    from app.public.views import blueprint as public
    from app.staff.blueprint import blueprint as staff

    app.register_blueprint(health)
    app.register_blueprint(public)
    app.register_blueprint(posts)
    app.register_blueprint(media)
    app.register_blueprint(leads)
    # The public form is cookie-free; app/leads/protection.py defends it instead of a token.
    csrf.exempt(leads)
    app.register_blueprint(staff)
