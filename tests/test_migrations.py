from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from app.extensions import db, include_in_autogenerate
from tests.conftest import ROOT

MIGRATIONS = str(ROOT / "migrations")


def schema_differences():
    with db.engine.connect() as connection:
        options = {"compare_type": True, "include_object": include_in_autogenerate}
        context = MigrationContext.configure(connection, opts=options)
        return compare_metadata(context, db.metadata)


def test_models_and_migrations_agree(app):
    assert schema_differences() == []


def test_migrations_downgrade_and_upgrade_again(app):
    downgrade(directory=MIGRATIONS, revision="base")
    upgrade(directory=MIGRATIONS)
    assert schema_differences() == []
