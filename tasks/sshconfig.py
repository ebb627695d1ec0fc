"""The ssh config for the task layer: which file applies (the stage's SSH_CONFIG, else the
operator's, with Include followed), the fabric Config and Connection built from it (ProxyJump in
ssh's order), and which stages list a host.

Fabric facts this module exists for (see ../shared/research/fabric-conventions.md):
- Paramiko ignores ``Include``: we expand it ourselves (commands/ssh.py).
- Fabric int()s the connect timeout (0.5 s became "no timeout") and the ssh_config port (``Port
  abc`` was a traceback): both are checked or rounded here first.
- Fabric builds a ``ProxyJump j1,j2`` chain backwards (fabric#2203): rebuilt here in ssh's order.
"""
from __future__ import annotations

import glob
import os
import threading

import paramiko
from fabric import Connection
from fabric.runners import Remote

from commands import ssh as ssh_cmd
from commands.shell import whole_seconds
from config import Settings, lists_host, stage_host_lists
from tasks.errors import SETUP, DeployError, ExitCode
from tasks.quickrun import QuickConnection


class QuickRemote(Remote):
    """fabric's remote runner, woken by the exit status. invoke's ``Runner.wait`` sleeps
    ``input_sleep`` (10 ms) between checks for it: ~7 ms added to every remote command
    (bench/README.md). Polling every 1 ms instead cost CPU, a wake-up per millisecond per command
    in flight: 0.13 s against 0.06 s for 12 commands of 0.3 s, 4 at a time, on the staging host;
    on 2 shared cores the deploy's own containers wait for that CPU.
    paramiko sets ``status_event`` when the exit status arrives or the channel closes; the IO
    threads are still checked for death (invoke's other reason to stop waiting) every 50 ms."""

    DEAD_THREADS_CHECK = 0.05

    def wait(self) -> None:
        while not (self.process_is_finished or self.has_dead_threads):
            self.channel.status_event.wait(self.DEAD_THREADS_CHECK)

    # invoke tells a timeout by its timer thread having ended. Its timer calls kill(), which closes
    # the channel; paramiko sets status_event before it sends the close, so wait() returns while
    # the timer still runs, and the timeout came back as exit -1 ("killed by a signal on the
    # host", 8 times in 10; 4 in 10 with the 1 ms poll). A kill by the timer is the timeout.
    _killed_by_timer = False

    def kill(self) -> None:
        self._killed_by_timer = threading.current_thread() is getattr(self, "_timer", None)
        super().kill()

    @property
    def timed_out(self) -> bool:
        return self._killed_by_timer or super().timed_out


def config_error(what: str, next_step: str) -> DeployError:
    return DeployError(what, state="nothing was run: the connection was not attempted", next_step=next_step,
                       kind=SETUP, code=ExitCode.CONFIG)


def read_ssh_config(path: str, system: bool = False) -> paramiko.SSHConfig:
    """One ssh config file with its Include lines followed (paramiko ignores them). A relative
    name is in ~/.ssh, or /etc/ssh for the system file, as ssh_config(5) says."""
    base = "/etc/ssh" if system else os.path.expanduser("~/.ssh")

    def read(pattern: str) -> list[str]:
        full = os.path.join(base, os.path.expanduser(pattern))        # an absolute name stays as it is
        return [_text_of(p) for p in sorted(glob.glob(full)) if os.path.isfile(p)]

    return paramiko.SSHConfig.from_text(ssh_cmd.expand_includes(_text_of(path), read))


def _text_of(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read()


def operator_ssh_config(config) -> paramiko.SSHConfig:
    """The operator's ssh config as fab loads it (the -S file, else ~/.ssh/config then
    /etc/ssh/ssh_config), read again with Include followed."""
    runtime = getattr(config, "_runtime_ssh_path", None) or config.ssh_config_path       # -S FILE
    if getattr(config, "_given_explicit_object", False):
        return config.base_ssh_config
    if runtime:
        files = [(runtime, False)]
    elif config.load_ssh_configs:
        files = [(getattr(config, "_user_ssh_path", "~/.ssh/config"), False),
                 (getattr(config, "_system_ssh_path", "/etc/ssh/ssh_config"), True)]
    else:
        return config.base_ssh_config          # given as an object (tests), or no files wanted
    merged = paramiko.SSHConfig()
    for path, system in files:
        path = os.path.expanduser(path)
        if os.path.isfile(path):
            merged._config += read_ssh_config(path, system)._config     # parse() of each file in turn, as fab does
    return merged


def stage_config(c, settings: Settings):
    """The fabric Config for this stage: the task's config (so --dry, -i, -e still apply) with the
    stage's ssh_config file and timeouts."""
    config = c.config.clone()
    # Dry-run and echo are applied by Session.run (reads still run under --dry); invoke's own
    # versions would hand empty output to every parser.
    config.run.dry = False
    config.run.echo = False
    config.runners.remote = QuickRemote
    # The stage's file replaces ~/.ssh/config, as `fab -S FILE` would; either is read again here,
    # with its Include lines followed.
    source = (f"the stage's ssh_config {settings.ssh_config} (SSH_CONFIG)" if settings.ssh_config else
              "your ssh config (~/.ssh/config and /etc/ssh/ssh_config, or the file given with -S)")
    try:
        config._set(base_ssh_config=read_ssh_config(settings.ssh_config) if settings.ssh_config else operator_ssh_config(c.config))
    except (paramiko.ConfigParseError, OSError, ValueError) as exc:
        raise config_error(f"{source} cannot be read: {exc}",
                           f"fix that line in {settings.ssh_config or 'it'} (every option needs a value: `HostName 10.0.0.5`), then re-run") from None
    if "timeout" not in (config.connect_kwargs or {}):
        # fabric int()s this value: 0.5 would become 0, which means no timeout at all.
        config.timeouts.connect = whole_seconds(settings.connect_timeout)
    config.connect_kwargs.setdefault("banner_timeout", settings.connect_timeout)
    config.connect_kwargs.setdefault("auth_timeout", settings.connect_timeout)
    # Opening a channel waits up to an hour by default (paramiko); a silent peer must not hang us.
    config.connect_kwargs.setdefault("channel_timeout", 3 * settings.connect_timeout)
    return config


def parse_host(host: str) -> ssh_cmd.HostSpec:
    try:
        return ssh_cmd.parse_host(host)
    except ssh_cmd.BadHostString as exc:
        raise config_error(str(exc), "give the host as [user@]host[:port], an IPv6 address as [address]:port") from None


def new_connection(spec: ssh_cmd.HostSpec, config, settings: Settings) -> Connection:
    """A Connection whose ssh_config options were checked first (fabric would int() them with a
    traceback)."""
    source = settings.ssh_config or "your ssh config (~/.ssh/config, or the file given with -S)"
    problems = ssh_cmd.ssh_config_problems(config.base_ssh_config.lookup(spec.host))
    if problems:
        raise config_error(f"{source}, for host {spec.host}: " + "; ".join(problems),
                           f"fix the options above in {source}, then re-run")
    try:
        cxn = QuickConnection(spec.host, user=spec.user, port=spec.port, config=config)
        _chain_jumps_in_order(cxn, config)
        return cxn
    except (ValueError, KeyError) as exc:          # e.g. a ProxyJump hop's own options
        raise config_error(f"{source}: cannot use the options for {spec.host}: {exc}",
                           f"fix the options for {spec.host} in {source}, then re-run") from None


def _chain_jumps_in_order(cxn: Connection, config) -> None:
    """``ProxyJump j1,j2``: ssh connects to j1, from there to j2, from there to the target. Fabric
    builds the chain backwards (fabric#2203): it connected to j2 directly and reached j1 through
    it, so the bastion j1 was bypassed, or j2 could not be reached at all. Rebuilt in ssh's order."""
    jumps = [h.strip() for h in (cxn.ssh_config.get("proxyjump") or "").split(",") if h.strip()]
    if len(jumps) < 2 or not isinstance(cxn.gateway, Connection):
        return
    gateway = None
    for hop in jumps:
        gateway = Connection(hop, gateway=gateway, config=config.clone())
    cxn._set(gateway=gateway)


def host_strings(c, settings: Settings) -> list[str]:
    """-H hosts as fab gave them (one Connection per call), else the stage's HOSTS."""
    given = getattr(c, "cli_host", None)           # set by tasks/program.py for every -H host
    if isinstance(c, Connection) and given:
        return [given]
    if isinstance(c, Connection):
        user_default = c.ssh_config.get("user", c.config.user)
        port_default = int(c.ssh_config.get("port", c.config.port))
        user = c.user if c.user != user_default else None
        port = int(c.port) if int(c.port) != port_default else None
        return [ssh_cmd.format_host(c.original_host, user, port)]
    return list(settings.hosts)


def ssh_target(ssh_config: paramiko.SSHConfig, host: str) -> tuple[str, int] | None:
    """Where ``host`` (a -H value or a HOSTS entry) connects, as that ssh config resolves it:
    (HostName, port); lowercase, without a final dot. None if it cannot be resolved."""
    try:
        spec = ssh_cmd.parse_host(host)
        found = ssh_config.lookup(spec.host)
        port = spec.port or ssh_cmd.parse_port(str(found.get("port", ssh_cmd.SSH_PORT)))
    except (ssh_cmd.BadHostString, ValueError, paramiko.SSHException, OSError):
        return None
    return found.get("hostname", spec.host).lower().rstrip("."), port


def _stage_ssh_config(path: str | None, operator: paramiko.SSHConfig) -> paramiko.SSHConfig | None:
    if not path:
        return operator
    try:
        return read_ssh_config(path)
    except (paramiko.ConfigParseError, OSError, ValueError):
        return None             # that stage is not set up here: its hosts are compared by name only


def stages_reaching(target: tuple[str, int] | None, operator: paramiko.SSHConfig) -> dict[str, str]:
    """{stage: its HOSTS entry} for every stage with an entry that connects to ``target``, each
    entry resolved through that stage's SSH_CONFIG, else the operator's ssh config."""
    found: dict[str, str] = {}
    if target is None:
        return found
    for stage, (hosts, path) in stage_host_lists().items():
        cfg = _stage_ssh_config(path, operator)
        for entry in hosts:
            if cfg is not None and ssh_target(cfg, entry) == target:
                found.setdefault(stage, entry)
    return found


def stages_of_host(c: Connection, host: str, settings: Settings | None = None) -> tuple[tuple | None, dict[str, str]]:
    """Where a -H host connects, and {stage: HOSTS entry} for every stage that lists it by name or
    by where it connects. It is resolved through the ssh config its connection will use: the
    stage's SSH_CONFIG if that stage lists it, else the operator's."""
    try:
        operator = operator_ssh_config(c.config)
    except (paramiko.ConfigParseError, OSError, ValueError):
        operator = c.config.base_ssh_config
    via = operator
    if settings and settings.ssh_config and lists_host(settings.hosts, host):
        via = _stage_ssh_config(settings.ssh_config, operator) or operator
    target = ssh_target(via, host)
    owners = stages_reaching(target, operator)
    for stage, (hosts, _) in stage_host_lists().items():
        named = [h for h in hosts if lists_host([h], host)]
        if named:
            owners.setdefault(stage, named[0])
    return target, owners
