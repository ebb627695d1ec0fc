"""Sizes a newcomer can read: no module of fabfile.py, tasks/, commands/ or config/ over 300 lines,
no function over 60 lines (from its ``def`` to its last line) unless the comment right above it
(above its decorators) says why it stays whole, in words that name it: ``# Kept whole: ...``."""
import re

from tests.codebase import functions, project_modules

MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
WHY_WHOLE = re.compile(r"\bwhole\b", re.I)


def long_functions(module: str, source: str) -> list[str]:
    return [f.where for f in functions(module, source)
            if f.lines > MAX_FUNCTION_LINES and not WHY_WHOLE.search(f.why_whole)]


def test_function_length_counts_from_def_to_last_line_and_accepts_a_reason():
    def body(n):
        return "".join(f"    x{i} = {i}\n" for i in range(n))
    source = (f"def short():\n{body(59)}\n"                                               # 60 lines
              f"class C:\n    def long(self):\n{body(60).replace('    ', '        ')}\n"   # 61 lines
              f"# Kept whole: one transaction, its steps read in order\n@decorated\ndef reasoned():\n{body(60)}\n"
              f"# a comment that gives no reason\ndef unreasoned():\n{body(60)}")
    assert [f.lines for f in functions("m", source)] == [60, 61, 61, 61]
    assert long_functions("m", source) == ["m:63 C.long (61 lines)", "m:190 unreasoned (61 lines)"]


def test_no_module_over_300_lines():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in project_modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_no_function_over_60_lines_without_a_reason_to_stay_whole():
    found = [where for name, path in project_modules().items()
             for where in long_functions(name, path.read_text(encoding="utf-8"))]
    assert found == []
