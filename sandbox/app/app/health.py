"""Dependency checks behind GET /health."""
import os
import socket
from urllib.parse import urlparse

from sqlalchemy import text

from app.db import engine


def check_postgres():
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _redis_command(sock, *args):
    payload = b"*%d\r\n" % len(args)
    for arg in args:
        data = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    sock.sendall(payload)
    reply = sock.recv(512)
    if reply.startswith(b"-"):
        raise RuntimeError("redis: " + reply[1:].decode(errors="replace").strip())
    return reply


def check_redis():
    # A tiny RESP client: the service only needs AUTH + PING, no client library.
    url = urlparse(os.environ.get("REDIS_URL", "redis://127.0.0.1:6380/0"))
    password = os.environ.get("REDIS_PASSWORD", "")
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=2) as sock:
        if password:
            _redis_command(sock, "AUTH", password)
        if not _redis_command(sock, "PING").startswith(b"+PONG"):
            raise RuntimeError("redis: unexpected PING reply")


def check():
    """Return (ok, {dependency: "ok" | error message})."""
    results = {}
    for name, probe in (("postgres", check_postgres), ("redis", check_redis)):
        try:
            probe()
            results[name] = "ok"
        except Exception as exc:  # any failure makes the service unhealthy
            results[name] = "%s: %s" % (type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    return all(v == "ok" for v in results.values()), results
