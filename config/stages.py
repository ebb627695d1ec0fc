"""Choosing the stage of a run: from --stage, from the -H host (the stage whose HOSTS list it), or
the default stage; and the host-name comparisons that choice rests on."""
from __future__ import annotations

import os
import re
from typing import Mapping

from config import load
from config.settings import ConfigError
from config.types import local_path


def default_stage(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    if environ.get("DEPLOY_STAGE"):
        return environ["DEPLOY_STAGE"]
    return load.read_env_file(load.CONFIG_DIR / "defaults.env").get("DEFAULT_STAGE", "staging")


def _host_name(host: str) -> str:
    host = host.split("@", 1)[-1]
    return host.rsplit(":", 1)[0] if re.search(r":[0-9]+$", host) else host


def lists_host(hosts, host: str) -> bool:
    """Whether ``hosts`` (a stage's HOSTS) name ``host``. User and port do not count: ``-H
    root@prod:2200`` is the host ``prod``."""
    return _host_name(host) in {_host_name(h) for h in hosts}


def _stage_hosts(stage: str, environ: Mapping[str, str] | None) -> list[str]:
    values, _ = load.raw_values(stage, environ)
    return [h.strip() for h in values.get("HOSTS", "").split(",") if h.strip()]


def stage_host_lists(environ: Mapping[str, str] | None = None) -> dict[str, tuple[list[str], str | None]]:
    """Every stage's HOSTS and the SSH_CONFIG they are reached through (None: the operator's own),
    from the raw values: another stage's unrelated bad key must not hide where its hosts are."""
    out = {}
    for stage in load.available_stages():
        values, _ = load.raw_values(stage, environ)
        ssh_config = values.get("SSH_CONFIG", "").strip()
        out[stage] = (_stage_hosts(stage, environ), local_path(ssh_config) if ssh_config else None)
    return out


def choose_stage(explicit: str | None, host: str | None, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Return (stage, why). --stage wins; else the stage whose HOSTS list the -H host; a -H host
    that no stage lists is refused (it would otherwise get another stage's app dir, URLs and ssh
    config); with no -H, the default stage."""
    if explicit is not None:            # `--stage ''` is a bad stage name, not "no --stage"
        return explicit, "--stage"
    if host:
        wanted = _host_name(host)
        listed = {stage: _stage_hosts(stage, environ) for stage in load.available_stages()}
        matches = [stage for stage, hosts in listed.items() if lists_host(hosts, host)]
        if len(matches) == 1:
            return matches[0], f"host {wanted} is listed in config/{matches[0]}.env"
        if len(matches) > 1:
            raise ConfigError([f"host {wanted} is listed in several stages ({', '.join(matches)}); pass --stage"],
                              next_step=f"fab -H {host} <task> --stage {matches[0]}")
        raise ConfigError(
            [f"-H host {wanted} is listed in no stage's HOSTS, so no stage's settings (app dir, URLs, ssh config) apply to it",
             *[f"config/{stage}.env: HOSTS={','.join(hosts) or '(empty)'}" for stage, hosts in listed.items()]],
            next_step=(f"add {wanted} to HOSTS in config/<stage>.env (or set DEPLOY_<STAGE>_HOSTS), or pass --stage STAGE "
                       f"to run with that stage's settings on {host}"))
    stage = default_stage(environ)
    why = "default stage: DEPLOY_STAGE" if (os.environ if environ is None else environ).get("DEPLOY_STAGE") \
        else "default stage: DEFAULT_STAGE in config/defaults.env"
    return stage, why
