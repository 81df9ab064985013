"""login lock-outs, shown to admins on the dashboard

Revision ID: 0005
Revises: 0004

Each row is one time a login limit refused attempts: for an account from one address, or for
every account from one address. Rows older than 30 days are deleted as new ones come.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "login_lockouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_lockouts")),
    )
    with op.batch_alter_table("login_lockouts") as batch:
        batch.create_index(batch.f("ix_login_lockouts_locked_at"), ["locked_at"], unique=False)


def downgrade():
    with op.batch_alter_table("login_lockouts") as batch:
        batch.drop_index(batch.f("ix_login_lockouts_locked_at"))
    op.drop_table("login_lockouts")
