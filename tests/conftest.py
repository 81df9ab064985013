import os
import re
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from flask.testing import FlaskClient
from flask_migrate import upgrade
from itsdangerous import TimestampSigner
from jinja2 import FileSystemBytecodeCache

from app import create_app
from app.accounts.models import User
from app.assets import digest
from app.extensions import db, mail
from app.leads import delivery
from app.leads.models import Lead
from app.leads.protection import new_render_token
from app.posts.models import Post
from app.posts.services import apply_fields
from app.posts.variants import write_variants
from app.types import utcnow

ROOT = Path(__file__).resolve().parent.parent
SITE_URL = "https://agency.test"

# Every test that uses the database runs on SQLite: each gets a copy of a migrated file.
# With TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test it runs on
# PostgreSQL too: a fresh database is created next to the one named (one per xdist worker),
# migrated once and emptied after each test. Tests without a database run once.
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL")
DATABASES = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]
CHEAP_PASSWORD_HASH = "pbkdf2:sha256:1"


def make_config(database_uri, **overrides):
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": database_uri,
        "SITE_URL": SITE_URL,
        "SITE_NAME": "Test Agency",
        "CONTENT_DIR": str(ROOT / "content"),
        # scrypt costs about 50 ms a hash; the suite logs in hundreds of times.
        "PASSWORD_HASH_METHOD": CHEAP_PASSWORD_HASH,
        # Tests change posts and look at once; test_http checks the delay itself.
        "CONTENT_CHECK_SECONDS": 0,
        # Tests post the form many times from one address; test_contact_limits checks it.
        "CONTACT_ATTEMPT_RATE_LIMIT": "1000 per minute",
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


@pytest.fixture(params=DATABASES)
def database_uri(request, tmp_path):
    """The URL of an empty, migrated database for this test (tests may ask for one kind with
    @pytest.mark.parametrize("database_uri", ["postgresql"], indirect=True))."""
    if request.param == "postgresql":
        if not POSTGRES_URL:
            pytest.skip("needs TEST_DATABASE_URL=postgresql+psycopg://...")
        url = request.getfixturevalue("postgres_database")
        yield url
        empty_postgres(url)
    else:
        path = tmp_path / "site.db"
        shutil.copy(request.getfixturevalue("migrated_sqlite"), path)
        yield f"sqlite:///{path}"


def empty_postgres(url):
    """Delete every row, children first: on tables this small DELETE takes about 1 ms where
    TRUNCATE takes 70. (test_migrations checks that the models name every table.)"""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for table in reversed(db.metadata.sorted_tables):
            connection.execute(table.delete())
    engine.dispose()


@pytest.fixture
def app_config(database_uri, tmp_path):
    """Settings for the app under test; a test may change them before using `app`."""
    return make_config(
        database_uri,
        LEAD_SPOOL_DIR=str(tmp_path / "spool"),
        UPLOAD_FOLDER=str(tmp_path / "uploads"),
    )


class FreshContextClient(FlaskClient):
    """Runs each request in an application context of its own, as a server does: nothing in
    `g` or the database session carries over from the test or from an earlier request."""

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture(scope="session")
def compiled_templates(tmp_path_factory):
    """Jinja's bytecode cache, shared by every app of the session. Each test builds its own
    app, and compiling the templates again for each one took a third of the suite's time."""
    return FileSystemBytecodeCache(str(tmp_path_factory.mktemp("jinja")))


@pytest.fixture
def make_app(app_config, compiled_templates):
    """Build more apps from app_config plus overrides; their connections close after the test."""
    apps = []

    def make(**overrides):
        apps.append(create_app({**app_config, **overrides}))
        apps[-1].test_client_class = FreshContextClient
        apps[-1].jinja_env.bytecode_cache = compiled_templates
        return apps[-1]

    yield make
    for built in apps:
        delivery.stop_in_process(built)
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


@pytest.fixture(scope="session")
def demo_cover_copies(tmp_path_factory):
    """The demo covers' WebP copies, made once for the session: an import only makes the
    copies its upload folder lacks, and making all 24 took most of each import's time."""
    folder = tmp_path_factory.mktemp("cover-copies")
    for path in sorted((ROOT / "static" / "img" / "covers").glob("*.png")):
        stat = path.stat()
        write_variants(path.read_bytes(), folder, digest(str(path), stat.st_mtime_ns, stat.st_size))
    return folder


@pytest.fixture
def demo_content(app, runner, demo_cover_copies):
    shutil.copytree(demo_cover_copies, app.config["UPLOAD_FOLDER"], dirs_exist_ok=True)
    result = runner.invoke(args=["content", "import"])
    assert result.exit_code == 0, result.output
    return db.session.scalars(sa.select(Post).order_by(Post.published_at.desc())).all()


STAFF_PASSWORD = "correct horse battery staple"
CSRF_INPUT = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)


@pytest.fixture
def make_user(app):
    """Create a staff account (an editor unless role="admin")."""
    counter = iter(range(1, 10_000))

    def make(role="editor", email=None, password=STAFF_PASSWORD, **fields):
        user = User(email=email or f"{role}{next(counter)}@agency.test", role=role, **fields)
        user.set_password(password)
        db.session.add(user)
        db.session.commit()
        return user

    return make


def csrf_token(client, url="/staff/login"):
    """The CSRF token a page of the staff area carries for this client's session."""
    match = CSRF_INPUT.search(client.get(url).text)
    assert match, f"no CSRF token on {url}"
    return match.group(1) or match.group(2)


@pytest.fixture
def login(client):
    """Log the test client in as a user through the real login form."""

    def log_in(user, password=STAFF_PASSWORD):
        response = client.post(
            "/staff/login",
            data={"email": user.email, "password": password, "csrf_token": csrf_token(client)},
        )
        assert response.status_code == 303, response.text
        return user

    return log_in


@pytest.fixture
def editor(make_user, login):
    return login(make_user("editor"))


@pytest.fixture
def admin(make_user, login):
    return login(make_user("admin"))


@pytest.fixture
def make_lead(app):
    """Store a lead directly (not through the form); keyword arguments override the defaults."""
    counter = iter(range(1, 1_000_000))

    def make(**fields):
        number = next(counter)
        values = {
            "name": f"Lead {number}",
            "email": f"lead{number}@client.example",
            "company": f"Company {number}",
            "message": f"Message {number}",
            "consent_text": "I agree.",
            "consent_version": "test",
            "source_url": "https://agency.test/",
            "source_path": "/",
            **fields,
        }
        lead = Lead(**values)
        db.session.add(lead)
        db.session.commit()
        return lead

    return make


def stored_leads(app):
    with app.app_context():
        return db.session.scalars(sa.select(Lead).order_by(Lead.id)).all()


def reference_of(response):
    """The lead reference a form post was thanked with (its 303 to the thank-you page)."""
    assert response.status_code == 303, response.text
    return response.location.rsplit("/", 1)[1]


def unreachable_database(database_uri, tmp_path):
    """A URL of the same kind as database_uri that no database answers."""
    if database_uri.startswith("postgresql"):
        return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone"
    return f"sqlite:///{tmp_path / 'no-such-folder' / 'site.db'}"


@contextmanager
def read_only(database_uri):
    """The same database refusing every write: PostgreSQL with default_transaction_read_only
    (as a hot standby or a failover answers), or the SQLite file opened read-only. Yields the
    URL to connect with."""
    url = sa.make_url(database_uri)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///file:{url.database}?mode=ro&uri=true"
        return
    engine = sa.create_engine(database_uri, isolation_level="AUTOCOMMIT")
    # Opened before the change, so its session can undo it; new connections are read-only.
    with engine.connect() as connection:
        setting = f'ALTER DATABASE "{url.database}" {{}} default_transaction_read_only'
        connection.exec_driver_sql(setting.format("SET") + " = on")
        try:
            yield database_uri
        finally:
            connection.exec_driver_sql(setting.format("RESET"))
    engine.dispose()


def spool_file(app, reference):
    """Where a lead kept in the spool (LEAD_SPOOL_DIR) is written."""
    return Path(app.config["LEAD_SPOOL_DIR"]) / f"{reference}.json"


def deliver(runner):
    """Run `flask leads deliver --once`, as the worker would; it must succeed."""
    result = runner.invoke(args=["leads", "deliver", "--once"])
    assert result.exit_code == 0, result.output
    return result


# SQL statements, counted as Warehouse's query_recorder counts them.


@dataclass
class QueryRecorder:
    """The statements the app's engine runs inside `with recorder:` blocks."""

    statements: list[str] = field(default_factory=list)
    recording: bool = False

    def __enter__(self):
        self.statements.clear()
        self.recording = True
        return self

    def __exit__(self, *exc_info):
        self.recording = False

    def __call__(self, connection, cursor, statement, *args):
        if self.recording:
            self.statements.append(statement)

    @property
    def count(self):
        return len(self.statements)

    def assert_at_most(self, bound):
        listing = "\n".join(f"  {number}. {sql}" for number, sql in enumerate(self.statements, 1))
        assert self.count <= bound, f"{self.count} queries, at most {bound} expected:\n{listing}"


@pytest.fixture
def query_recorder(app):
    """Record the app's SQL: `with query_recorder: client.get(url)`, then check the count."""
    recorder = QueryRecorder()
    sa.event.listen(db.engine, "before_cursor_execute", recorder)
    yield recorder
    sa.event.remove(db.engine, "before_cursor_execute", recorder)


# Mail: a real SMTP server on loopback, one that refuses, one that never answers.


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MailServer:
    host: str
    port: int

    @property
    def config(self):
        """Settings that send an app's mail here: make_app(**server.config)."""
        return {"MAIL_SERVER": self.host, "MAIL_PORT": self.port}

    def configure(self, app):
        use_mail_server(app, self.host, self.port)


def use_mail_server(app, host, port):
    """Point an existing app's mail at host:port; Flask-Mail reads its settings at init_app."""
    app.config.update(MAIL_SERVER=host, MAIL_PORT=port)
    mail.init_app(app)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class SMTPServer(MailServer):
    messages: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def wait_for(self, count, timeout=10.0):
        """Wait until `count` messages have arrived (or the timeout); return them."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages


@contextmanager
def serving(server):
    """An SMTPServer (or a subclass) listening on its host and port while in the block."""
    controller = Controller(server, hostname=server.host, port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def smtp_server():
    """An aiosmtpd server on 127.0.0.1 collecting what it receives in `messages`."""
    with serving(SMTPServer("127.0.0.1", free_port())) as server:
        yield server


@pytest.fixture
def redis_prefix(request):
    """A key prefix (RATELIMIT_KEY_PREFIX) of this test alone in the Redis database its
    module names in REDIS_URL; the keys under it are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex}"
    yield prefix
    delete_redis_keys(request.module.REDIS_URL, f"*{prefix}*")


def delete_redis_keys(url, pattern):
    with redis.Redis.from_url(url) as connection:
        keys = list(connection.scan_iter(pattern))
        if keys:
            connection.delete(*keys)


@pytest.fixture
def refusing_smtp_port():
    """A loopback port nothing listens on: connections are refused."""
    return free_port()


@pytest.fixture
def silent_smtp_server():
    """Completes TCP connections (from the listen backlog) and never sends a greeting."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
        yield MailServer(*listener.getsockname())


# The "Let's connect" form, sent as a visitor would send it.

LEAD_FIELDS = {
    "name": "Ada Lovelace",
    "email": "ada@example.org",
    "company": "Analytical Engines Ltd",
    "phone": "+44 20 7946 0000",
    "message": "We are launching a new sensor and need a campaign.\nCan we talk next week?",
}


def render_token(app, age=10):
    """The form's signed render timestamp, as if the page had been shown `age` seconds ago."""
    with app.app_context(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - age)
        return new_render_token()


@pytest.fixture
def post_lead():
    """POST a valid "Let's connect" form as a visitor on `page`; keywords replace fields."""

    def post(client, page=None, headers=None, **fields):
        app = client.application
        site_url = app.config["SITE_URL"]
        data = {f"contact-{name}": value for name, value in {**LEAD_FIELDS, **fields}.items()}
        data["contact-consent"] = "y"
        data["contact-rendered_at"] = render_token(app)
        headers = {"Origin": site_url, "Referer": page or f"{site_url}/contact", **(headers or {})}
        return client.post("/contact", data=data, headers=headers)

    return post
