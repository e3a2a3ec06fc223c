"""`pinseal-gateway init`: a new gateway's configuration file and key, checked before anything is written.

Every refusal comes before the first write, so a refused `init` leaves nothing half-made. An existing
key is never replaced, not even with `--force` (devices would reject every ack signed by a new key):
`--force` rewrites the configuration and the broker files and keeps the key it finds.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinseal_gateway import config_template
from pinseal_gateway.config import GatewayConfig, load_config
from pinseal_gateway.keys import KeyFileError, create_gateway_key, load_gateway_key


class InitError(Exception):
    """`init` refused (an existing file without --force, an unknown owner); nothing was written."""


@dataclass(frozen=True)
class InitResult:
    config_path: Path
    config: GatewayConfig
    public_key: bytes
    key_created: bool


def check_targets(config_path: Path, data_dir: Path, key_file: str, *, force: bool) -> None:
    """Refuse to overwrite the configuration or to stand next to an existing key, unless `force`."""
    if force:
        return
    existing = [p for p in (config_path, data_dir / key_file) if p.exists()]
    if existing:
        raise InitError(
            f"refusing to overwrite {' and '.join(map(str, existing))}: pass --force to rewrite the "
            "configuration and the broker files (an existing gateway key is always kept)"
        )


def owner_ids(owner: str | None) -> tuple[int, int] | None:
    """(uid, gid) of the service user that will own the data folder, or None to leave it to whoever runs."""
    if owner is None:
        return None
    try:
        entry = pwd.getpwnam(owner)
    except KeyError as exc:
        raise InitError(
            f"--owner {owner}: no such user (create it: sudo useradd --system --home-dir /var/lib/"
            f"pinseal-gateway --shell /usr/sbin/nologin {owner})"
        ) from exc
    return entry.pw_uid, entry.pw_gid


def write_config(path: Path, settings: dict[str, Any]) -> GatewayConfig:
    """Write the commented file (0644: it holds no secret, only where they are) and load it back."""
    text = config_template.render(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return load_config(path)


def make_key(config: GatewayConfig) -> tuple[bytes, bool]:
    """The gateway key's public half, creating the key (0600) unless one is there; (public, created)."""
    from pinseal_protocol import keys

    if config.key_path.exists():
        return keys.public_key_bytes(load_gateway_key(config.key_path)), False
    try:
        key = create_gateway_key(config.key_path)
    except KeyFileError as exc:
        raise InitError(str(exc)) from exc
    return keys.public_key_bytes(key), True


def hand_over(data_dir: Path, ids: tuple[int, int] | None) -> None:
    """Give the data folder and what is in it to the service user (the key stays 0600, now theirs)."""
    if ids is None:
        return
    uid, gid = ids
    for path in [data_dir, *data_dir.rglob("*")]:
        os.chown(path, uid, gid, follow_symlinks=False)
