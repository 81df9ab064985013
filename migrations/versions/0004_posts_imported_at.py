"""when each post was last imported from its content file

Revision ID: 0004
Revises: 0003

`flask content import --update` updates a post from its file only if nobody changed it in
the web editor since then (updated_at is later than imported_at). Posts that exist already
have no import on record, so --update leaves them alone until they are imported afresh.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("posts", sa.Column("imported_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("posts") as batch:
        batch.drop_column("imported_at")
