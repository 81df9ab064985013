"""Copying a whole database out and back in: SQLite with its online backup API, PostgreSQL with
pg_dump and pg_restore. Both read one consistent snapshot while the site keeps writing, and
both put a copy back in a single step that either completes or changes nothing.
"""

import os
import secrets
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from app.backup import schema
from app.extensions import db


class BackupError(Exception):
    """A backup cannot be made or restored; the message says why and what to do."""


def current():
    """The app's own database."""
    url = make_url(db.engine.url)
    if url.get_backend_name() == "sqlite":
        return SQLite(url)
    if url.get_backend_name() == "postgresql":
        return PostgreSQL(url)
    raise BackupError(f"Backups support SQLite and PostgreSQL, not {url.get_backend_name()}.")


def state(connection):
    return schema.revision_of(connection), schema.row_counts(connection)


def check_counts(connection, expected):
    """Every table the manifest names holds the rows it promises."""
    found = schema.row_counts(connection)
    wrong = [
        f"{name}: {found.get(name, 'missing')} rows, {rows} expected"
        for name, rows in expected.items()
        if found.get(name) != rows
    ]
    if wrong:
        raise BackupError("The archive's database does not match its manifest: " + "; ".join(wrong))


def migrate_at(url, expected):
    """Check a restored copy against the manifest, then bring it to this code's schema."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            check_counts(connection, expected)
            schema.upgrade(connection)
    except DBAPIError as error:
        raise BackupError(
            f"The archive's database cannot be read or migrated ({error.orig}). "
            "The site's database was not changed."
        ) from None
    finally:
        engine.dispose()


class Database:
    def is_empty(self):
        with db.engine.connect() as connection:
            return not schema.has_rows(connection)


class SQLite(Database):
    kind = "sqlite"
    label = "SQLite"
    file_name = "database.sqlite3"

    def __init__(self, url):
        if not url.database or url.database == ":memory:":
            raise BackupError("An in-memory SQLite database cannot be backed up.")
        self.path = Path(url.database).resolve()

    def is_empty(self):
        return not self.path.exists() or super().is_empty()

    def dump(self, destination):
        if not self.path.is_file():
            raise BackupError(f"There is no database at {self.path}.")
        source = sqlite3.connect(self.path.as_uri() + "?mode=ro", uri=True, timeout=30)
        with closing(source), closing(sqlite3.connect(destination)) as copy:
            source.backup(copy)
        return self.state_of(destination)

    def load(self, copy, revision, expected):
        """Bring the copy up to date beside the live file, then copy it over in one step."""
        migrate_at(f"sqlite:///{copy}", expected)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (
            closing(sqlite3.connect(copy)) as source,
            closing(sqlite3.connect(self.path, timeout=30)) as live,
        ):
            source.backup(live)

    @staticmethod
    def state_of(path):
        engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return state(connection)
        finally:
            engine.dispose()


# Ownership and grants stay with whoever restores: the roles of another server may differ.
PORTABLE = ("--no-owner", "--no-privileges")


class PostgreSQL(Database):
    kind = "postgresql"
    label = "PostgreSQL"
    file_name = "database.pgdump"

    def __init__(self, url):
        self.url = url

    def dump(self, destination):
        """pg_dump reads the snapshot the counts were read in, so they describe the same rows."""
        connection = db.engine.connect().execution_options(isolation_level="REPEATABLE READ")
        with connection:
            snapshot = connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
            found = state(connection)
            self.dump_database(destination, f"--snapshot={snapshot}")
        return found

    def dump_database(self, destination, *options, database=None):
        self.run(
            "pg_dump",
            "--format=custom",
            *PORTABLE,
            *options,
            f"--file={destination}",
            database=database,
        )

    def load(self, dump, revision, expected):
        """One pg_restore transaction replaces every table. An archive from an older schema is
        first restored and migrated in a scratch database, so the live one changes once."""
        migrating = revision != schema.head()
        if migrating:
            dump = self.migrated(dump, expected)
        try:
            self.run(
                "pg_restore",
                "--single-transaction",
                "--exit-on-error",
                "--clean",
                "--if-exists",
                *PORTABLE,
                str(dump),
            )
        except BackupError as error:
            raise BackupError(f"{error} The site's database was not changed.") from None
        if not migrating:
            with db.engine.connect() as connection:
                check_counts(connection, expected)

    def migrated(self, dump, expected):
        scratch = f"{self.url.database}_restore_{secrets.token_hex(4)}"
        admin = create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{scratch}"')
        except DBAPIError as error:
            admin.dispose()
            raise BackupError(
                "This archive comes from an older schema. Migrating it needs a scratch database, "
                f"and creating one failed ({error.orig}). Grant the user CREATEDB, or restore the "
                "archive with the version of the site that made it and run `flask db upgrade`."
            ) from error
        try:
            self.run(
                "pg_restore",
                "--single-transaction",
                "--exit-on-error",
                *PORTABLE,
                str(dump),
                database=scratch,
            )
            migrate_at(self.url.set(database=scratch), expected)
            migrated = dump.with_name("migrated.pgdump")
            self.dump_database(migrated, database=scratch)
            return migrated
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
            admin.dispose()

    def run(self, program, *arguments, database=None):
        target = URL.create(
            "postgresql",
            username=self.url.username,
            host=self.url.host,
            port=self.url.port,
            database=database or self.url.database,
            query=self.url.query,
        ).render_as_string()
        environment = dict(os.environ)
        if self.url.password:
            environment["PGPASSWORD"] = str(self.url.password)
        command = [program, *arguments, f"--dbname={target}"]
        try:
            subprocess.run(  # noqa: S603 - a fixed program; the URL is the app's own setting
                command, env=environment, check=True, capture_output=True, text=True
            )
        except FileNotFoundError:
            raise BackupError(
                f"{program} is not installed. Install the PostgreSQL client tools "
                "(apt-get install postgresql-client), at the server's version or newer."
            ) from None
        except subprocess.CalledProcessError as error:
            raise BackupError(f"{program} failed: {error.stderr.strip()}.") from None
