"""Issue 8: every configuration key is declared once (config/keys.py). config/defaults.env and the
key table of docs/configuration.md are written from that table and must not drift from it; the
Settings fields are derived from it; a stage file sets only declared keys."""
import dataclasses
import re

from dotenv import dotenv_values

from config import render
from config.keys import CONTACT_KEYS, GLOBAL, KEYS, PER_STAGE, STAGE_KEYS
from config.load import CONFIG_DIR, available_stages
from config.settings import Settings


def test_every_key_is_declared_once():
    names = [k.name for k in KEYS]
    assert len(names) == len(set(names))


def test_defaults_env_is_the_one_written_from_the_key_table():
    assert render.DEFAULTS_ENV.read_text(encoding="utf-8") == render.defaults_env(), \
        "config/defaults.env differs from config/keys.py: run `make config-docs`"


def test_defaults_env_reads_back_as_exactly_the_declared_defaults():
    # what python-dotenv reads (quoting, ' #' comments) is the declared value, and nothing else is in the file
    read = {k: v or "" for k, v in dotenv_values(render.DEFAULTS_ENV, interpolate=False).items()}
    assert read == {k.name: k.default for k in KEYS}


def test_the_documentation_table_is_the_one_written_from_the_key_table():
    doc = render.CONFIGURATION_MD.read_text(encoding="utf-8")
    assert doc == render.configuration_md(doc), "docs/configuration.md differs from config/keys.py: run `make config-docs`"
    table = doc[doc.index(render.DOC_BEGIN):doc.index(render.DOC_END)]
    assert re.findall(r"^\| `([A-Z_]+)` \|", table, re.M) == [k.name for k in KEYS]


def test_render_refuses_a_default_python_dotenv_would_read_back_differently():
    assert render.env_value("a|b #c") == '"a|b #c"'
    assert render.env_value('python -c "x"') == 'python -c "x"'
    try:
        render.env_value('say "hi" #there')
    except ValueError as exc:
        assert "cannot hold" in str(exc)
    else:
        raise AssertionError("a default that cannot be quoted was written")


def test_settings_has_one_field_per_stage_key():
    fields = [f.name for f in dataclasses.fields(Settings)]
    assert fields == ["stage", *(k.field for k in STAGE_KEYS), "contacts", "sources", "secrets"]
    assert {k.name for k in CONTACT_KEYS} == {"CONTACT_DATABASE", "CONTACT_INFRASTRUCTURE", "CONTACT_SECURITY"}


def test_stage_files_set_only_declared_keys():
    # a misspelt key in a stage file would otherwise be ignored without a word
    for stage in available_stages():
        assert set(dotenv_values(CONFIG_DIR / f"{stage}.env")) - set(PER_STAGE) == set(), stage
    assert [k.name for k in KEYS if k.scope == GLOBAL] == ["DEFAULT_STAGE"]
