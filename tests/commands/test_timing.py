from commands import timing


def make():
    t = timing.Timer()
    t.add("checklist", None, 1.0)
    t.add("prepare", "git pull", 0.5)
    t.add("prepare", "env diff", 0.2)
    t.add("prepare", None, 0.8)
    t.add("services", "pull", 6.0)
    t.add("services", "up", 1.0)
    t.add("services", "health wait", 2.0)
    t.add("services", None, 9.2)
    return t


def test_total_counts_steps_not_substeps():
    assert make().total() == 11.0


def test_bottleneck_is_the_largest_leaf():
    b = timing.bottleneck(make())
    assert (b.step, b.sub, b.seconds) == ("services", "pull", 6.0)


def test_step_without_substeps_is_its_own_leaf():
    t = timing.Timer()
    t.add("checklist", None, 5.0)
    t.add("services", "pull", 1.0)
    t.add("services", None, 1.5)
    assert timing.bottleneck(t).label == "checklist"


def test_table_and_summary():
    text = timing.table(make())
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["step", "seconds", "share"]
    assert any(l.startswith("services") and "9.20" in l and "83.6%" in l for l in lines)
    assert any(l.startswith("  · pull") and "6.00" in l and "54.5%" in l for l in lines)
    assert lines[-1].split()[:3] == ["total", "11.00", "100.0%"]
    s = timing.summary(make())
    assert s.startswith("Bottleneck: services › pull took 6.00 s (55% of 11.00 s). Hint: image pull dominates")


def test_failed_steps_are_marked_and_empty_timer():
    t = timing.Timer()
    t.add("migrate", "alembic", 2.0, ok=False)
    t.add("migrate", None, 2.5, ok=False)
    assert "(failed)" in timing.table(t)
    assert timing.summary(timing.Timer()) == "No steps were timed."


def test_bar():
    assert timing.bar(0.5, 10) == "█████·····"
    assert timing.bar(0, 4) == "····"
