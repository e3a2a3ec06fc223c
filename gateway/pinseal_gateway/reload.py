"""SIGHUP: read the configuration file again and apply the keys a running gateway can change.

Only keys that the running code reads afresh each time it uses them can change without a restart
(`RELOADABLE`, listed in docs/gateway.md). Every other key is wired into a connection, a socket, a worker
process or the database path at start; a change to one of those is logged as needing a restart and the
gateway keeps running as it was, so a reload can never leave it half-changed. A file that no longer
loads (a typo) changes nothing and is logged as an error: the running gateway stays as it was.
"""

from __future__ import annotations

import logging
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from pinseal_gateway.config import ConfigError, GatewayConfig, load_config, validate

log = logging.getLogger(__name__)

RELOADABLE = frozenset(
    {
        "gateway.log_level",
        "devices.expected_interval_s",
        "devices.silent_after_intervals",
        "batch.interval_s",
        "batch.max_bundles",
        "batch.max_bytes",
        "uplink.backoff_initial_s",
        "uplink.backoff_max_s",
    }
)


def changes(old: GatewayConfig, new: GatewayConfig) -> dict[str, tuple[Any, Any]]:
    """Every key whose value differs, as "section.key" -> (old, new)."""
    changed = {}
    for section in fields(old):
        before, after = getattr(old, section.name), getattr(new, section.name)
        for key in fields(before):
            a, b = getattr(before, key.name), getattr(after, key.name)
            if a != b:
                changed[f"{section.name}.{key.name}"] = (a, b)
    return changed


def merge(old: GatewayConfig, new: GatewayConfig, keys: set[str]) -> GatewayConfig:
    """`old` with the values of `keys` taken from `new`."""
    merged = old
    for name in keys:
        section, key = name.split(".", 1)
        part = replace(getattr(merged, section), **{key: getattr(getattr(new, section), key)})
        merged = replace(merged, **{section: part})
    return merged


def reload_config(path: Path, running: GatewayConfig, *, log_level_fixed: bool = False) -> GatewayConfig:
    """The configuration to run with after a SIGHUP: `running` with the reloadable changes of `path`.

    `log_level_fixed`: `--log-level` was given on the command line, which wins over the file.
    """
    try:
        new = load_config(path)
    except ConfigError as exc:
        log.error("config reload: %s; keeping the running configuration", exc)
        return running
    changed = changes(running, new)
    if not changed:
        log.info("config reload: %s has no changes", path)
        return running
    applied = {k for k in changed if k in RELOADABLE}
    if log_level_fixed and "gateway.log_level" in applied:
        applied.discard("gateway.log_level")
        log.warning("config reload: gateway.log_level not applied: --log-level on the command line wins")
    for key in sorted(changed.keys() - RELOADABLE):
        old, value = changed[key]
        log.warning(
            "config reload: %s changed (%r -> %r) but needs a restart; still running with %r",
            key,
            old,
            value,
            old,
        )
    merged = merge(running, new, applied)
    try:
        validate(merged)  # e.g. a new batch.max_bytes against the running verify.max_bundle_bytes
    except ConfigError as exc:
        log.error("config reload: %s (with the keys that need a restart unchanged); nothing applied", exc)
        return running
    if "gateway.log_level" in applied:
        logging.getLogger().setLevel(merged.gateway.log_level)
    for key in sorted(applied):
        old, value = changed[key]
        log.info("config reload: %s %r -> %r", key, old, value)
    return merged
