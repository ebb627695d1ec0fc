"""add summary column to documents

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-03 09:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    # Nullable, so the v1 code that is still running during the deploy keeps working.
    op.add_column("documents", sa.Column("summary", sa.Text, nullable=True))
    # Backfill existing rows instead of dropping them.
    op.execute("UPDATE documents SET summary = left(body, 60) WHERE summary IS NULL")


def downgrade():
    op.drop_column("documents", "summary")
