"""Where the gateway's configuration file is: `--config`, then `$PINSEAL_GATEWAY_CONFIG`, then
`/etc/pinseal/gateway.toml`.

Every command but `init` needs a file found this way. Running on built-in defaults instead made the
read-only commands (`status`, `proof`, `devices list`) open, and so create, an empty database wherever
the defaults pointed, and answer as if the gateway had no devices; now they say where they looked.
A place that is named (the option or the variable) but holds no file is an error of its own: falling
through to the next place would run a different gateway than the one asked for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pinseal_gateway.config import ConfigError

CONFIG_ENV = "PINSEAL_GATEWAY_CONFIG"
SYSTEM_CONFIG = Path("/etc/pinseal/gateway.toml")
"""The system-wide file (the systemd unit's); a module attribute so tests can point it elsewhere."""


class ConfigNotFound(ConfigError):
    """No configuration file at any of the places looked at."""


@dataclass(frozen=True)
class FoundConfig:
    path: Path
    source: str
    """How it was found: "--config", "$PINSEAL_GATEWAY_CONFIG" or "the system default"."""


def find_config(explicit: str | None, environ: Mapping[str, str] | None = None) -> FoundConfig:
    """The configuration file to use, or `ConfigNotFound` naming every place looked at."""
    environ = os.environ if environ is None else environ
    if explicit:
        return _existing(Path(explicit), "--config")
    from_env = environ.get(CONFIG_ENV)
    if from_env:
        return _existing(Path(from_env), f"${CONFIG_ENV}")
    if SYSTEM_CONFIG.is_file():
        return FoundConfig(SYSTEM_CONFIG, "the system default")
    raise ConfigNotFound(
        f"no configuration found: looked at --config (not given), ${CONFIG_ENV} (not set) and "
        f"{SYSTEM_CONFIG} (no such file). Create one with `pinseal-gateway init --config FILE` "
        "and pass --config FILE"
    )


def _existing(path: Path, source: str) -> FoundConfig:
    if not path.is_file():
        raise ConfigNotFound(
            f"no configuration file at {path} (from {source}). "
            f"Create one with `pinseal-gateway init --config {path}`"
        )
    return FoundConfig(path, source)
