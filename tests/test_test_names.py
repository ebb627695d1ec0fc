"""pytest imports test modules by basename (no __init__.py packages here): two test files with one
name in different folders break the collection of the whole suite, which only CI runs. Seen twice."""
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_every_test_module_has_a_name_of_its_own():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, k in names.items() if k > 1] == []
