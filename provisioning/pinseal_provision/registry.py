"""Registering devices with the gateway and the network, through their own command-line tools.

Provisioning runs `pinseal-gateway ... devices add/list/revoke` and `pinseal-ingest ... devices add/revoke`
as an owner would, instead of writing their databases: those tools own their schemas, hashing of MQTT
passwords and duplicate rules, and keep working while their daemons run.

The gateway prints a device's MQTT password once. Between `devices add` and writing /config.json to the
board, a cut would lose it; so it is kept in a journal file (0600, in the state folder) until the config on
the board is verified, and the next run picks it up (enroll resumes instead of failing on "already
registered").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinseal_protocol import keys
from pinseal_provision.errors import BadInput, RegistryError

CLI_TIMEOUT_S = 60.0


def tool(name: str) -> str:
    """A console script of this installation (beside the running Python), else from PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise RegistryError(
            f"{name} is not installed", "install pinseal (pip install -e .) in this environment"
        )
    return found


def _run(args: list[str]) -> str:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RegistryError(f"{' '.join(args[:3])} did not finish in {CLI_TIMEOUT_S:g} s") from exc
    if proc.returncode != 0:
        raise RegistryError(
            f"{Path(args[0]).name} {' '.join(args[1:3])} failed: {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc.stdout


def check_device_key(public_key: bytes) -> None:
    """Refuse a key no device can hold (small-order, invalid) before either registry is touched: the
    gateway and the ingest refuse it too, but one of them might already have registered it."""
    try:
        keys.check_public_key(public_key)
    except ValueError as exc:
        raise BadInput(
            f"the board's public key cannot be registered: {exc}",
            "the board's identity is broken: erase its key (re-flash) and enroll it again",
        ) from exc


@dataclass(frozen=True)
class Gateway:
    """A gateway installation, by its config file."""

    config: Path

    def __post_init__(self) -> None:
        if not self.config.is_file():
            raise BadInput(
                f"no gateway config {self.config}", "pass the gateway's TOML file with --gateway-config"
            )

    def cli(self, *args: str) -> str:
        return _run([tool("pinseal-gateway"), *args, "--config", str(self.config)])

    def devices(self) -> dict[str, str]:
        """key id hex -> "active" / "revoked"."""
        out = {}
        for line in self.cli("devices", "list").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                out[parts[0]] = parts[1]
        return out

    def add(self, public_key: bytes, label: str | None, interval_s: int | None) -> str:
        """Register; returns the MQTT password the gateway printed (once)."""
        check_device_key(public_key)
        args = ["devices", "add", public_key.hex()]
        if label:
            args += ["--label", label]
        if interval_s is not None:
            args += ["--interval", str(interval_s)]
        out = self.cli(*args)
        match = re.search(r"mqtt password: (\S+)", out)
        if match is None:
            raise RegistryError(f"pinseal-gateway devices add printed no MQTT password: {out.strip()!r}")
        return match.group(1)

    def revoke(self, key_id_hex: str) -> None:
        self.cli("devices", "revoke", key_id_hex)

    def export(self) -> list[dict[str, Any]]:
        return list(json.loads(self.cli("devices", "export")))

    def public_key(self) -> bytes:
        """The gateway's public key, as `pinseal-gateway pubkey --json` reports it.

        Provisioning asks the gateway's own tool rather than load its private key: the key file stays
        the gateway's alone (its mode and format checks included), and only the public half crosses.
        """
        try:
            out = self.cli("pubkey", "--json")
        except RegistryError as exc:
            raise RegistryError(
                f"cannot get the gateway's public key via {self.config}: {exc}",
                "pass --gateway-public-key HEX (printed by `pinseal-gateway pubkey`)",
            ) from exc
        try:
            public = bytes.fromhex(str(json.loads(out)["public_key"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"pinseal-gateway pubkey printed no public key: {out.strip()!r}") from exc
        if len(public) != 32:
            raise RegistryError(f"pinseal-gateway pubkey printed a {len(public)}-byte key: {out.strip()!r}")
        return public


@dataclass(frozen=True)
class Ingest:
    """The reference network ingest's registry, by its database."""

    db: Path

    def add(self, public_key: bytes, label: str | None) -> None:
        check_device_key(public_key)
        args = [tool("pinseal-ingest"), "devices", "add", public_key.hex(), "--db", str(self.db)]
        _run(args + (["--label", label] if label else []))

    def revoke(self, key_id_hex: str) -> None:
        _run([tool("pinseal-ingest"), "devices", "revoke", key_id_hex, "--db", str(self.db)])


def export_record(path: Path, record: dict[str, Any]) -> None:
    """Add (or replace, by kid) a device in a JSON list that `pinseal-ingest devices import` reads."""
    records: list[dict[str, Any]] = []
    if path.exists():
        try:
            records = list(json.loads(path.read_text()))
        except ValueError as exc:
            raise BadInput(f"{path} is not a device export (JSON list): {exc}") from exc
    records = [r for r in records if r.get("kid") != record["kid"]] + [record]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(records, indent=2) + "\n")
    os.replace(tmp, path)


class Journal:
    """Secrets between registration and the board holding them: one 0600 file per key id."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, key_id_hex: str) -> Path:
        return self.folder / f"{key_id_hex}.pending.json"

    def save(self, key_id_hex: str, data: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(key_id_hex)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({**data, "saved_at": time.time()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load(self, key_id_hex: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self._path(key_id_hex).read_text()))
        except FileNotFoundError:
            return None

    def clear(self, key_id_hex: str) -> None:
        self._path(key_id_hex).unlink(missing_ok=True)
