import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from app.accounts.models import LoginLockout
from app.extensions import db, include_in_autogenerate
from app.logs import pseudonym
from app.types import utcnow
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


LOCK_OUTS_0005 = sa.table(
    "login_lockouts",
    sa.column("locked_at", sa.DateTime(timezone=True)),
    sa.column("locked_until", sa.DateTime(timezone=True)),
    sa.column("email", sa.String),
    sa.column("scope", sa.String),
    sa.column("address", sa.String),
)


def lock_out_typed(email):
    now = utcnow()
    return {
        "locked_at": now,
        "locked_until": now,
        "email": email,
        "scope": "account",
        "address": "203.0.113.7",
    }


def lock_outs_text():
    """Every value of every lock-out row, whatever the columns of this revision."""
    with db.engine.connect() as connection:
        rows = connection.execute(sa.select(sa.text("*")).select_from(LOCK_OUTS_0005)).all()
    return " ".join(str(value) for row in rows for value in row)


def test_lock_outs_keep_the_account_or_a_keyed_hash_of_the_address_typed(app, make_user):
    """Migration 0006 converts the rows 0005 kept with the address as typed."""
    account = make_user(email="Staff@Agency.test")
    account_id, typed = account.id, "tr0ub4dor&3-staff-secret"
    db.session.remove()
    downgrade(directory=MIGRATIONS, revision="0005")
    with db.engine.begin() as connection:
        connection.execute(
            LOCK_OUTS_0005.insert(),
            [lock_out_typed("staff@agency.test"), lock_out_typed(typed)],
        )

    upgrade(directory=MIGRATIONS)

    kept = db.session.execute(
        sa.select(LoginLockout.account_id, LoginLockout.email_hash).order_by(LoginLockout.id)
    ).all()
    assert kept == [(account_id, None), (None, pseudonym(typed))]
    assert typed not in lock_outs_text()
    db.session.remove()

    downgrade(directory=MIGRATIONS, revision="0005")
    with db.engine.connect() as connection:
        emails = connection.scalars(sa.select(LOCK_OUTS_0005.c.email)).all()
    assert sorted(emails) == sorted(
        ["Staff@Agency.test", f"an address with no account (ref {pseudonym(typed)})"]
    )
    upgrade(directory=MIGRATIONS)
    assert schema_differences() == []
