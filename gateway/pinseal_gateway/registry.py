"""The device registry as the verifier uses it: loaded public keys, and following the devices table.

`Registry` is an immutable snapshot (replaced whole on every change, so a group is always checked
against one consistent registry, in this process or the verify worker). `RegistryFollower` keeps the
current snapshot and its version, polling the table's fingerprint: a revocation or a new device takes
effect within `REFRESH_S`, and an unknown key id may force an earlier look (`UNKNOWN_REFRESH_S`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pinseal_gateway.store import devices as device_store
from pinseal_gateway.store.db import Database
from pinseal_protocol import keys
from pinseal_protocol.errors import Revoked, UnknownDevice

log = logging.getLogger(__name__)

REFRESH_S = 1.0  # a revocation or a new device takes effect within this long
UNKNOWN_REFRESH_S = 0.2  # an unknown kid triggers a registry reload at most this often

RawRegistry = Mapping[bytes, tuple[bytes, bool]]
"""kid -> (raw 32-byte public key, revoked): the registry as it crosses to a verify worker process."""


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    public_key: Ed25519PublicKey
    revoked: bool


class Registry:
    """The devices allowed to send, as loaded public keys; replaced whole when the devices table changes."""

    def __init__(self, entries: Mapping[bytes, RegistryEntry] | None = None) -> None:
        self._entries = dict(entries or {})
        # Raw key bytes for libsodium on the fast path, encoded once per registry load.
        self._raw = {kid: entry.public_key.public_bytes_raw() for kid, entry in self._entries.items()}
        self._prefixes: dict[int, dict[bytes, dict[bytes, bool]]] = {}

    @classmethod
    def from_raw(cls, raw: RawRegistry) -> Registry:
        """The registry `to_raw` sent (in a verify worker)."""
        return cls(
            {kid: RegistryEntry(keys.load_public_key(key), revoked) for kid, (key, revoked) in raw.items()}
        )

    def __len__(self) -> int:
        return len(self._entries)

    def resolve(self, kid: bytes) -> Ed25519PublicKey:
        """`verify_bundle`'s key resolver: UnknownDevice / Revoked before any signature work."""
        entry = self._entries.get(kid)
        if entry is None:
            raise UnknownDevice(f"kid {kid.hex()} is not registered")
        if entry.revoked:
            raise Revoked(f"kid {kid.hex()} is revoked")
        return entry.public_key

    def resolve_raw(self, kid: bytes) -> bytes:
        """Like `resolve`, the raw 32-byte public key (for `pinseal_protocol.sodium`)."""
        self.resolve(kid)
        return self._raw[kid]

    def with_prefix(self, prefix: bytes) -> dict[bytes, bool]:
        """kid -> revoked, of every registered key id whose first `len(prefix)` bytes are `prefix` (the BLE
        intake's look-up of an advertised key id prefix; indexed once per snapshot and prefix length)."""
        index = self._prefixes.get(len(prefix))
        if index is None:
            index = self._prefixes[len(prefix)] = {}
            for kid, entry in self._entries.items():
                index.setdefault(kid[: len(prefix)], {})[kid] = entry.revoked
        return index.get(prefix, {})

    def to_raw(self) -> dict[bytes, tuple[bytes, bool]]:
        """kid -> (raw public key, revoked): the registry as sent to a verify worker process."""
        return {kid: (self._raw[kid], entry.revoked) for kid, entry in self._entries.items()}


def load_registry(conn: sqlite3.Connection) -> tuple[Registry, tuple[object, ...]]:
    """The registry and the fingerprint of the devices table it was loaded from."""
    entries = {
        d.kid: RegistryEntry(keys.load_public_key(d.public_key), d.revoked)
        for d in device_store.list_devices(conn)
    }
    return Registry(entries), device_store.registry_fingerprint(conn)


class RegistryFollower:
    """The current registry and its version (bumped on every reload), following the devices table."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.registry = Registry()
        self.version = 0
        self._fingerprint: tuple[object, ...] | None = None
        self._checked = 0.0

    async def refresh(self, *, force: bool = False, unknown: bool = False) -> bool:
        """Reload the registry if the devices table changed; True when it was reloaded.

        Polls at most every `REFRESH_S` (`UNKNOWN_REFRESH_S` when a message named an unknown key id:
        a device added a moment ago must not be turned away until the next periodic look).
        """
        now = time.monotonic()
        interval = UNKNOWN_REFRESH_S if unknown else REFRESH_S
        if not force and now - self._checked < interval:
            return False
        self._checked = now
        fingerprint = await self._db.run(device_store.registry_fingerprint)
        if not force and fingerprint == self._fingerprint:
            return False
        self.registry, self._fingerprint = await self._db.run(load_registry)
        self.version += 1
        log.info("device registry loaded: %d devices", len(self.registry))
        return True
