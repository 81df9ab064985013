import os
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from app import create_app
from app.extensions import db
from app.posts.models import Post
from app.posts.services import apply_fields
from app.types import utcnow

ROOT = Path(__file__).resolve().parent.parent
SITE_URL = "https://agency.test"

# TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test runs the suite on
# PostgreSQL: a fresh database is created next to the one named, migrated once and
# emptied after each test. Without it, each test gets a copy of a migrated SQLite file.
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL")


def make_config(database_uri, **overrides):
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": database_uri,
        "SITE_URL": SITE_URL,
        "SITE_NAME": "Test Agency",
        "CONTENT_DIR": str(ROOT / "content"),
        **overrides,
    }


def migrate(database_uri):
    app = create_app(make_config(database_uri))
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        db.engine.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database():
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"agency_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    migrate(url)
    yield url
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def database_uri(request, tmp_path):
    if POSTGRES_URL:
        url = request.getfixturevalue("postgres_database")
        yield url
        empty_postgres(url)
    else:
        path = tmp_path / "site.db"
        shutil.copy(request.getfixturevalue("migrated_sqlite"), path)
        yield f"sqlite:///{path}"


def empty_postgres(url):
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        tables = connection.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        ).scalars()
        names = ", ".join(f'"{table}"' for table in tables)
        if names:
            connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    engine.dispose()


@pytest.fixture
def app_config(database_uri):
    """Settings for the app under test; a test may change them before using `app`."""
    return make_config(database_uri)


@pytest.fixture
def make_app(app_config):
    """Build more apps from app_config plus overrides; their connections close after the test."""
    apps = []

    def make(**overrides):
        apps.append(create_app({**app_config, **overrides}))
        return apps[-1]

    yield make
    for built in apps:
        with built.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    app = make_app()
    with app.app_context():
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_post(app):
    """Create a published post; keyword arguments override the defaults."""
    counter = iter(range(1, 10_000))

    def make(**fields):
        number = next(counter)
        values = {
            "slug": f"post-{number}",
            "title": f"Post number {number}",
            "standfirst": f"Standfirst of post {number}.",
            "body_markdown": f"Body of post {number}.",
            "source_markdown": "[Example News](https://news.example)",
            "meta_description": "",
            "published_at": utcnow() - timedelta(days=number),
            "tags": [],
            **fields,
        }
        post = Post(slug=values["slug"])
        apply_fields(post, values)
        db.session.add(post)
        db.session.commit()
        return post

    return make


@pytest.fixture
def demo_content(app, runner):
    result = runner.invoke(args=["content", "import"])
    assert result.exit_code == 0, result.output
    return db.session.scalars(sa.select(Post).order_by(Post.published_at.desc())).all()
