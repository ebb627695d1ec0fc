"""Learning the secrets to hide, from the env files on the host, before any remote output is shown.

A file that exists but cannot be read stops the run: its secrets would be unknown, so they could
be printed. A missing file is fine (the env diff says so).
"""
from __future__ import annotations

from commands import envdiff, files
from commands.secrets import MIN_LENGTH
from tasks import ui
from tasks.errors import DeployError


def learn_secrets(s) -> None:
    """Teach the session's redactor the secret values of ENV_FILES and SECRET_FILES (one round trip)."""
    st = s.settings
    names = list(dict.fromkeys([*st.env_files, *st.secret_files]))
    if names:
        cmd = files.read_files([files.app_file(st.app_dir, n) for n in names])
        r = s.run(cmd, check=False)
        texts, unreadable = files.parse_files(r.stdout)
        for name in names:
            text = texts.get(files.app_file(st.app_dir, name))
            parsed = envdiff.parse_env(text) if text is not None else None
            s.state.env_files[name] = parsed         # read once: the env diff and the checklist use it
            if parsed:
                s.redactor.add_env(parsed)
            if text is not None:
                s.redactor.add_env(envdiff.unparsed(text))     # what Compose may read but dotenv cannot
        if unreadable:
            raise unreadable_error(s, unreadable, r.stderr, cmd)
    warn_short_secrets(s.redactor)


def warn_short_secrets(redactor) -> None:
    """Once per run: secret values the redactor cannot handle well (too short to be redacted by
    value in free text; plain words or numbers; yes/no values under a secret-looking name)."""
    r = redactor
    unreported = sorted(r.too_short - r.too_short_reported)
    if unreported:
        ui.warn(f"secret value(s) too short to redact by value (under {MIN_LENGTH} characters): "
                f"{', '.join(unreported)}. They are masked only where their name comes with them "
                f"(NAME=value), not in free text: replace them with real secrets.")
        r.too_short_reported.update(unreported)
    ordinary = sorted(r.ordinary - r.reported)
    if ordinary:
        ui.warn(f"secret value(s) that are plain words or numbers: {', '.join(ordinary)}. Every occurrence "
                f"of them in any output is shown as [REDACTED], also inside other words, names and commands, "
                f"which can make output hard to read; they are also easy to guess: replace them with real secrets.")
    flags = sorted(r.no_secret - r.reported)
    if flags:
        ui.warn(f"{', '.join(flags)}: secret-looking name(s) with a yes/no value; a yes/no value is no secret and is "
                f"not hidden in free text (it would hide every 'true' in output), only where its name comes with it.")
    r.reported.update(ordinary, flags)


def unreadable_error(s, paths: list[str], stderr: str, cmd: str) -> DeployError:
    why = files.unreadable_reasons(paths, stderr)
    return DeployError(
        f"cannot read {', '.join(f'{p} ({why[p]})' for p in paths)} on {s.host}: the secrets to hide "
        f"are learned from these files, so this run could print them",
        command=cmd, step="secrets", state="nothing was changed: only the env files were read",
        next_step=(f"make the file(s) readable by the SSH user on {s.host} (owner or mode), or leave a "
                   f"file out knowingly for one run with DEPLOY_ENV_FILES / DEPLOY_SECRET_FILES; then re-run"))


def env_file(s, name: str) -> dict | None:
    """An env file of the app dir, parsed (None if it does not exist). Read once per run: by
    learn_secrets for ENV_FILES and SECRET_FILES, else here."""
    if name not in s.state.env_files:
        text = s.read_file(name)
        parsed = envdiff.parse_env(text) if text is not None else None
        if parsed:
            s.redactor.add_env(parsed)
        s.state.env_files[name] = parsed
    return s.state.env_files[name]
