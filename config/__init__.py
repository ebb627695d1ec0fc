"""Stage settings: python-dotenv files in this folder, overridable by environment variables.

Load order, lowest to highest:
  1. ``config/defaults.env``                       shared defaults
  2. ``config/<stage>.env``                        the stage (staging, production, ...)
  3. ``DEPLOY_<KEY>``                              environment, applies to the stage being run
  4. ``DEPLOY_<STAGE>_<KEY>``                      environment, applies to that stage only

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
from config.load import CONFIG_DIR, ENV_PREFIX, available_stages, load_settings, raw_values
from config.secrets import config_secrets
from config.settings import ConfigError, Contact, Settings
from config.stages import choose_stage, default_stage, lists_host, stage_host_lists

__all__ = [
    "CONFIG_DIR", "CONTACT_KINDS", "ENV_PREFIX", "KEYS", "ConfigError", "Contact", "Key", "Settings",
    "available_stages", "choose_stage", "config_secrets", "default_stage", "lists_host", "load_settings",
    "raw_values", "stage_host_lists",
]
