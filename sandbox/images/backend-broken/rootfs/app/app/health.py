"""Dependency checks behind GET /health (broken release: a bad refactor)."""


def check():
    # The regression this release ships with: every health check raises.
    raise RuntimeError("health check misconfigured: settings.HEALTH_DEPENDENCIES is undefined")
