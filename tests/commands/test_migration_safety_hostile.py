"""Adversary pass on migrations_breaking: spellings of alembic's op the first version missed, and
revision ids REVIEWED_MIGRATIONS cannot hold."""
import pytest

from commands import checklist as items_cmd
from commands import migration_safety as ms
from config import types

HEAD = 'revision = "{rev}"\ndown_revision = None\nimport sqlalchemy as sa\n'


def found(src: str, rev: str = "abc123") -> list[tuple[str, str]]:
    return [(f.operation, f.target) for f in ms.analyse("migrations/versions/x.py", HEAD.format(rev=rev) + src).findings]


def test_op_functions_imported_from_alembic_op_are_seen():
    src = ("from alembic.op import drop_column as dc, add_column\n"
           "def upgrade():\n    dc('t', 'c')\n    add_column('t', sa.Column('x', sa.Integer, nullable=False))\n")
    assert found(src) == [("drop_column", "t.c"), ("add_column(nullable=False)", "t.x")]


def test_op_imported_as_a_module_alias_is_seen():
    assert found("import alembic.op as o\ndef upgrade():\n    o.drop_table('t')\n") == [("drop_table", "t")]


def test_a_local_function_named_like_an_op_is_not_a_finding():
    assert found("def drop_table(t):\n    pass\ndef upgrade():\n    drop_table('t')\n") == []


@pytest.mark.parametrize("rev", ["1.2_users", "$(reboot)", "a-b"])
def test_a_revision_id_reviewed_migrations_cannot_hold_is_never_suggested_for_it(rev):
    report = ms.analyse("migrations/versions/x.py", HEAD.format(rev=rev) + "from alembic import op\n"
                        "def upgrade():\n    op.drop_table('t')\n")
    assert report.revision == rev and report.breaking
    v = ms.verdict([report], "blue-green")
    fix = items_cmd.review_fix([rev], ["ok_1"], "staging")
    for text in (v.detail, fix):
        assert f"REVIEWED_MIGRATIONS={rev}" not in text and f",{rev}" not in text
        assert f"{rev}: the comment only" in text


def test_every_suggested_reviewed_migrations_value_loads():
    fix = items_cmd.review_fix(["0003", "x.y"], ["0001"], "staging")
    value = fix.split("REVIEWED_MIGRATIONS=", 1)[1].split(" ", 1)[0]
    assert types.listing(types.revision_id)(value) == ("0001", "0003")
    assert "x.y: the comment only" in fix
