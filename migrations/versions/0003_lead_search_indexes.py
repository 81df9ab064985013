"""trigram index for searching leads on PostgreSQL

Revision ID: 0003
Revises: 0002

The staff inbox searches lower(name || ' ' || email || ' ' || company || ' ' || message)
with LIKE '%term%' (app/leads/inbox.py, SEARCH_TEXT). A B-tree cannot serve a leading
wildcard; a pg_trgm GIN index on that same expression can. SQLite has no equivalent and
scans, which is fine at the sizes SQLite serves. Where the database user may not create
the extension, the index is skipped and search scans. The index is not in the models:
app.extensions.include_in_autogenerate hides it from autogenerate.
"""

import logging

from alembic import op
from sqlalchemy.exc import DBAPIError

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    try:
        with bind.begin_nested():
            op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DBAPIError as error:
        logger.warning("pg_trgm unavailable (%s); lead search will scan the table", error)
        return
    op.execute(
        "CREATE INDEX ix_leads_search ON leads USING gin "
        "(lower(name || ' ' || email || ' ' || company || ' ' || message) gin_trgm_ops)"
    )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_leads_search")
