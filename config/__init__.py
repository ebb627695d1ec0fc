"""Stage settings: python-dotenv files in this folder, overridable by environment variables.

Load order, lowest to highest:
  1. ``config/defaults.env``                       shared defaults
  2. ``config/<stage>.env``                        the stage (staging, production, ...)
  3. ``config/local.env`` (git-ignored)            the operator's own settings, every stage
  4. ``$DEPLOY_LOCAL_CONFIG/local.env`` and ``$DEPLOY_LOCAL_CONFIG/<stage>.env``
                                                   the same, kept in a directory of the operator's
  5. ``DEPLOY_<KEY>``                              environment, applies to the stage being run
  6. ``DEPLOY_<STAGE>_<KEY>``                      environment, applies to that stage only

Everything is validated before any SSH connection; an error names the key and where its value
came from. The result is one frozen :class:`Settings`. No fabric/invoke imports here, and nothing
of ``commands/``: this is the bottom layer.

- ``keys.py``        every key, declared once (type, default, meaning); the rest derives from it
- ``types.py``       the value parsers; ``validators.py`` the shell-value checks ``commands/`` uses too
- ``settings.py``    ``Settings`` (derived from the keys), ``Contact``, ``ConfigError``
- ``load.py``        reading, merging and validating one stage
- ``stages.py``      choosing the stage from --stage, the -H host or the default
- ``secrets.py``     the secrets the config itself holds, found before validation
- ``render.py``      writes ``defaults.env`` and the key table of docs/configuration.md from ``keys.py``
"""
from config.keys import CONTACT_KINDS, KEYS, Key
from config.load import (
    CONFIG_DIR,
    ENV_PREFIX,
    LOCAL_DIR_VARIABLE,
    LOCAL_FILE,
    available_stages,
    env_files,
    load_settings,
    placeholder_problems,
    raw_values,
)
from config.secrets import config_secrets
from config.settings import ConfigError, Contact, Settings
from config.stages import choose_stage, default_stage, lists_host, stage_host_lists
from config.types import PROJECT_ROOT

__all__ = [
    "CONFIG_DIR", "CONTACT_KINDS", "ENV_PREFIX", "KEYS", "LOCAL_DIR_VARIABLE", "LOCAL_FILE", "PROJECT_ROOT", "ConfigError", "Contact", "Key", "Settings",
    "available_stages", "choose_stage", "config_secrets", "default_stage", "lists_host", "load_settings",
    "env_files", "placeholder_problems", "raw_values", "stage_host_lists",
]
