"""create documents table

Revision ID: 0001
Revises:
Create Date: 2025-01-06 09:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    documents = op.create_table(
        "documents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )
    # Seed rows so a fresh environment has something to answer questions about.
    op.bulk_insert(documents, [
        {"id": 1, "title": "Getting started",
         "body": "ai-doc-qa answers questions about your documents. Upload a document, then ask."},
        {"id": 2, "title": "Deployment runbook",
         "body": "Pull, migrate, pull images, up -d, then poll health until every service is healthy."},
        {"id": 3, "title": "Escalation contacts",
         "body": "Database corruption: DBA team. Infrastructure down: platform team. Security: security team."},
    ])
    op.execute("SELECT setval(pg_get_serial_sequence('documents', 'id'), 3)")


def downgrade():
    op.drop_table("documents")
