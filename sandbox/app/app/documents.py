"""Document queries."""
from sqlalchemy import text

from app.db import engine

COLUMNS = ("id", "title", "body", "created_at")


def list_documents():
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT %s FROM documents ORDER BY id" % ", ".join(COLUMNS)))
        return [_row_to_json(row._mapping) for row in rows]


def _row_to_json(row):
    out = {}
    for key, value in row.items():
        out[key] = value.isoformat() if hasattr(value, "isoformat") else value
    return out
