"""Document queries (v3: the summary is called abstract, in the database and in the API)."""
import os

from app.db import engine
from sqlalchemy import text

# Migration 0003 renames documents.summary to abstract: this code needs it, the v2 code breaks on it.
COLUMNS = ("id", "title", "body", "abstract", "created_at")
# Abstracts are cut to this many characters when served (the v2 setting, kept).
SUMMARY_MAX_CHARS = int(os.environ.get("SUMMARY_MAX_CHARS") or 200)


def list_documents():
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT %s FROM documents ORDER BY id" % ", ".join(COLUMNS)))
        return [_row_to_json(row._mapping) for row in rows]


def _row_to_json(row):
    out = {}
    for key, value in row.items():
        out[key] = value.isoformat() if hasattr(value, "isoformat") else value
    if out.get("abstract"):
        out["abstract"] = out["abstract"][:SUMMARY_MAX_CHARS]
    return out
