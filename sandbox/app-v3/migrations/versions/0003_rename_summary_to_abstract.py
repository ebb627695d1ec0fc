"""rename documents.summary to abstract

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-03 09:00:00

Breaks the v2 code on purpose: v2 selects documents.summary, so from the moment this runs until
the v3 backend serves, GET /api/v1/documents fails with 'column "summary" does not exist'. The
deploy checklist must warn about it under STRATEGY=recreate and block it under blue-green until it
is marked reviewed (a "deploy: reviewed-breaking-change" comment, or REVIEWED_MIGRATIONS=0003).
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.alter_column("documents", "summary", new_column_name="abstract", existing_type=sa.Text())


def downgrade():
    op.alter_column("documents", "abstract", new_column_name="summary", existing_type=sa.Text())
