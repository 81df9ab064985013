"""login lock-outs name the account, or a keyed hash of the address typed, never the text

Revision ID: 0006
Revises: 0005

What was typed in the login's address field is sometimes a password, typed in the wrong
field, and it was kept in clear for 30 days. Existing rows are converted: the account whose
address matches, as the login matches it, else the keyed hash the logs give the address
(app.logs.pseudonym, with this site's SECRET_KEY). A downgrade cannot bring the text back:
it writes the account's address, or the hash.
"""

import sqlalchemy as sa
from alembic import op

from app.logs import pseudonym

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

users = sa.table("users", sa.column("id", sa.Integer), sa.column("email", sa.String))
lock_outs = sa.table(
    "login_lockouts",
    sa.column("id", sa.Integer),
    sa.column("email", sa.String),
    sa.column("account_id", sa.Integer),
    sa.column("email_hash", sa.String),
)
FOREIGN_KEY = "fk_login_lockouts_account_id_users"


def upgrade():
    with op.batch_alter_table("login_lockouts") as batch:
        batch.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("email_hash", sa.String(length=16), nullable=True))
        batch.create_foreign_key(
            batch.f(FOREIGN_KEY), "users", ["account_id"], ["id"], ondelete="CASCADE"
        )
    replace_the_addresses_typed()
    with op.batch_alter_table("login_lockouts") as batch:
        batch.drop_column("email")


def replace_the_addresses_typed():
    """The rows kept the address typed trimmed and lower-cased, as the login compares it."""
    connection = op.get_bind()
    accounts = dict(connection.execute(sa.select(sa.func.lower(users.c.email), users.c.id)).all())
    rows = connection.execute(sa.select(lock_outs.c.id, lock_outs.c.email)).all()
    if not rows:
        return
    connection.execute(
        lock_outs.update()
        .where(lock_outs.c.id == sa.bindparam("row_id"))
        # Blanked before the column is dropped: a dropped column's values stay in the rows
        # until they are written again.
        .values(account_id=sa.bindparam("account"), email_hash=sa.bindparam("hash"), email=""),
        [
            {
                "row_id": row_id,
                "account": accounts.get(email),
                "hash": None if email in accounts else pseudonym(email),
            }
            for row_id, email in rows
        ],
    )


def downgrade():
    with op.batch_alter_table("login_lockouts") as batch:
        batch.add_column(sa.Column("email", sa.String(length=254), nullable=True))
    account_email = (
        sa.select(users.c.email).where(users.c.id == lock_outs.c.account_id).scalar_subquery()
    )
    no_account = sa.literal("an address with no account (ref ") + lock_outs.c.email_hash + ")"
    op.execute(lock_outs.update().values(email=sa.func.coalesce(account_email, no_account)))
    with op.batch_alter_table("login_lockouts") as batch:
        batch.alter_column("email", existing_type=sa.String(length=254), nullable=False)
        batch.drop_constraint(batch.f(FOREIGN_KEY), type_="foreignkey")
        batch.drop_column("email_hash")
        batch.drop_column("account_id")
