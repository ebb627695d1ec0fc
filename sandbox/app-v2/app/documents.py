"""Document queries (v2: documents carry a summary)."""
import os

from sqlalchemy import text

from app.db import engine

COLUMNS = ("id", "title", "body", "summary", "created_at")
# New in v2: summaries are cut to this many characters when served.
SUMMARY_MAX_CHARS = int(os.environ.get("SUMMARY_MAX_CHARS") or 200)


def list_documents():
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT %s FROM documents ORDER BY id" % ", ".join(COLUMNS)))
        return [_row_to_json(row._mapping) for row in rows]


def _row_to_json(row):
    out = {}
    for key, value in row.items():
        out[key] = value.isoformat() if hasattr(value, "isoformat") else value
    if out.get("summary"):
        out["summary"] = out["summary"][:SUMMARY_MAX_CHARS]
    return out
