"""Database access: one SQLAlchemy engine for the whole process.

`python -c "from app.db import engine; engine.connect()"` is the runbook's connection check.
"""
import os

from sqlalchemy import create_engine

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5433/aidocqa")

# pool_pre_ping: a postgres restart must not leave dead connections in the pool.
# connect_timeout: /health must answer quickly when postgres is down.
engine = create_engine(
    DATABASE_URL,
    pool_pre_ping=True,
    pool_size=5,
    connect_args={"connect_timeout": 2},
)
