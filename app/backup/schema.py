"""The schema revision of a database, compared with this code's migrations, and upgraded."""

from alembic import command
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from flask import current_app
from sqlalchemy import column, func, inspect, literal, select, table

VERSION_TABLE = "alembic_version"


def alembic_config():
    return current_app.extensions["migrate"].migrate.get_config()


def scripts():
    return ScriptDirectory.from_config(alembic_config())


def head():
    return scripts().get_current_head()


def is_known(revision):
    try:
        return scripts().get_revision(revision) is not None
    except (RevisionError, CommandError):
        return False


def upgrade(connection):
    """Run the migrations up to head on this connection (any database, not only the app's)."""
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def revision_of(connection):
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(
        select(column("version_num")).select_from(table(VERSION_TABLE))
    ).scalar()


def row_counts(connection):
    """Rows in each of the database's tables, the migrations' own table left out."""
    names = sorted(set(inspect(connection).get_table_names()) - {VERSION_TABLE})
    return {
        name: connection.execute(select(func.count()).select_from(table(name))).scalar_one()
        for name in names
    }


def has_rows(connection):
    names = set(inspect(connection).get_table_names()) - {VERSION_TABLE}
    return any(
        connection.execute(select(literal(1)).select_from(table(name)).limit(1)).first()
        for name in names
    )
