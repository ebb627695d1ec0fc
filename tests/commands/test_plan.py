from commands.plan import deploy_plan
from config import load_settings


def test_plan_lists_the_runbook_in_order_without_connecting():
    st = load_settings("production", {})
    plan = deploy_plan(st)
    steps = []
    for step, _, _ in plan:
        if not steps or steps[-1] != step:
            steps.append(step)
    assert steps == ["connect", "start", "checklist", "prepare", "pull", "migrate", "services", "verify", "on failure", "end"]
    cmds = [c for _, _, c in plan]
    pull = cmds.index("cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml pull --quiet -- backend model_server proxy")
    up = cmds.index("cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml up -d")
    record_images = [i for i, (s, w, _) in enumerate(plan) if "record the running images" in w][0]
    migrate = [i for i, (s, w, _) in enumerate(plan) if s == "migrate"][0]
    assert record_images < pull < migrate < up     # images recorded before any pull (runbook note 3); pulled before migrating
    assert "git -C /app/ai-doc-qa merge --ff-only --quiet origin/main" in cmds
    assert any("exec -T backend sh -c" in c and "alembic upgrade head" in c for c in cmds)


def test_plan_for_compose_v1():
    st = load_settings("production", {})
    cmds = [c for _, _, c in deploy_plan(st, "docker-compose")]
    assert "cd /app/ai-doc-qa && docker-compose -f docker-compose.production.yml up -d" in cmds
