#!/usr/bin/env python3
"""``fab`` with every SSH exec request counted: the tool's remote commands per deploy.

Counting happens below the tool, in paramiko (``Channel.exec_command``), so it sees every command
whatever the tool does with it: echoed or quiet, from the main thread or a helper thread (lock
heartbeat, downtime probe), batched or not. At exit it prints ``bench: N ssh exec requests`` on
stderr; with BENCH_COMMANDS_LOG=FILE it also writes each command, one per line.

Usage (from the repo root): .venv/bin/python bench/count_commands.py [fab options] deploy --stage staging
"""
from __future__ import annotations

import atexit
import os
import sys
import threading

import paramiko

_count = 0
_lock = threading.Lock()
_log_path = os.environ.get("BENCH_COMMANDS_LOG")
_original = paramiko.Channel.exec_command


def _counted(self, command):
    global _count
    with _lock:
        _count += 1
        if _log_path:
            with open(_log_path, "a", encoding="utf-8") as fh:
                fh.write(command.replace("\n", "\\n") + "\n")
    return _original(self, command)


def _report() -> None:
    print(f"bench: {_count} ssh exec requests", file=sys.stderr, flush=True)


if __name__ == "__main__":
    paramiko.Channel.exec_command = _counted
    atexit.register(_report)
    from fabric.main import program

    sys.argv[0] = "fab"
    sys.exit(program.run())
