"""Writes ``config/defaults.env`` and the key table of docs/configuration.md from the key table
(config/keys.py), so neither is kept in sync by hand. ``make config-docs`` runs it;
tests/config/test_keys.py fails when a written file differs from what this renders.

    python -m config.render           write both files
    python -m config.render --check   exit 1 if either differs (what the test checks)
"""
from __future__ import annotations

import sys
from pathlib import Path

from config.keys import GROUPS, Key

CONFIG_DIR = Path(__file__).resolve().parent
DEFAULTS_ENV = CONFIG_DIR / "defaults.env"
CONFIGURATION_MD = CONFIG_DIR.parent / "docs" / "configuration.md"
DOC_BEGIN = "<!-- keys: generated from config/keys.py by `make config-docs`; do not edit by hand -->"
DOC_END = "<!-- keys: end -->"
RULE_WIDTH = 92

HEADER = """\
# Generated from config/keys.py by `make config-docs`: edit the key there, not here.
# Shared defaults for every stage. A stage file (staging.env, production.env) overrides these;
# DEPLOY_<KEY> and DEPLOY_<STAGE>_<KEY> environment variables override both.
# Values are python-dotenv syntax; lists are comma-separated.
"""


def env_value(value: str) -> str:
    """``value`` as python-dotenv reads it back: quoted where a bare value would be cut at `` #``."""
    if " #" in value or value != value.strip():
        if '"' in value or "\\" in value:
            raise ValueError(f"a default that needs quotes cannot hold \" or \\: {value!r}")
        return f'"{value}"'
    return value


def _env_key(key: Key) -> list[str]:
    return [*(f"# {line}" for line in key.doc.splitlines()), f"{key.name}={env_value(key.default)}"]


def defaults_env() -> str:
    lines = [HEADER.rstrip("\n")]
    for group in GROUPS:
        lines.append("")
        if group.title:
            rule = f"# --- {group.title} "
            lines.append(rule + "-" * max(3, RULE_WIDTH - len(rule)))
        for key in group.keys:
            lines += _env_key(key)
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|")


def key_table() -> str:
    lines = [DOC_BEGIN, "", "| key | default | meaning |", "| --- | --- | --- |"]
    for group in GROUPS:
        lines.append(f"| **{group.title or 'Stage'}** | | |")
        for key in group.keys:
            default = f"`{_cell(key.default)}`" if key.default else "(empty)"
            lines.append(f"| `{key.name}` | {default} | {_cell(key.doc)} |")
    return "\n".join([*lines, "", DOC_END])


def configuration_md(current: str) -> str:
    """``current`` with the text between the two markers replaced by :func:`key_table`."""
    begin, end = current.index(DOC_BEGIN), current.index(DOC_END) + len(DOC_END)
    return current[:begin] + key_table() + current[end:]


def main(argv: list[str]) -> int:
    wanted = {DEFAULTS_ENV: defaults_env(), CONFIGURATION_MD: configuration_md(CONFIGURATION_MD.read_text(encoding="utf-8"))}
    stale = [path for path, text in wanted.items() if path.read_text(encoding="utf-8") != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path} differs from config/keys.py: run `make config-docs`", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
