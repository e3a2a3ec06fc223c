"""Who the ingest trusts: registered gateways (batch signers) and devices (bundle signers).

The operator adds keys by hand or imports the gateway's device export; a revoked key stays in the table
(with `revoked_at`) so its old batches and bundles still name a known signer, while new ones from it are
rejected as `revoked`. The resolvers plug into `batch.verify_header` and `bundle.verify_bundle`.
"""

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pinseal_ingest.storage import Database
from pinseal_protocol import keys, labels
from pinseal_protocol.errors import Revoked, UnknownDevice

Table = Literal["gateways", "devices"]


@dataclass(frozen=True)
class Signer:
    """One registered key."""

    kid: bytes
    public_key: bytes
    label: str | None
    added_at: float
    revoked_at: float | None


def parse_public_key(text: str) -> bytes:
    """A raw Ed25519 public key from 64 hex digits (checked to be a valid point)."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError as exc:
        raise ValueError(f"not a 32-byte Ed25519 public key in hex: {text!r}") from exc
    return keys.check_public_key(raw)


def add(
    conn: Database,
    table: Table,
    public_key: bytes,
    *,
    label: str | None = None,
    revoked_at: float | None = None,
    now: float | None = None,
) -> tuple[bytes, bool]:
    """Register a key; returns its kid and whether it was new (an existing key is left as it is)."""
    kid = keys.key_id(keys.check_public_key(public_key))
    if label is not None:
        labels.check_label(label)
    cursor = conn.execute(
        f"INSERT INTO {table} (kid, public_key, label, added_at, revoked_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (kid, public_key, label, time.time() if now is None else now, revoked_at),
    )
    return kid, cursor.rowcount == 1


def revoke(conn: Database, table: Table, kid: bytes, *, now: float | None = None) -> bool:
    """Mark a key revoked (keeping the first revocation time); False if the kid is not registered."""
    when = time.time() if now is None else now
    conn.execute(f"UPDATE {table} SET revoked_at = COALESCE(revoked_at, ?) WHERE kid = ?", (when, kid))
    return conn.execute(f"SELECT 1 FROM {table} WHERE kid = ?", (kid,)).fetchone() is not None


def list_signers(conn: Database, table: Table) -> list[Signer]:
    """Every registered key, oldest first."""
    rows = conn.execute(
        f"SELECT kid, public_key, label, added_at, revoked_at FROM {table} ORDER BY added_at, kid"
    ).fetchall()
    return [Signer(*row) for row in rows]


def import_devices(
    conn: Database, entries: Iterable[Mapping[str, Any]], *, now: float | None = None
) -> tuple[int, int]:
    """Register devices from a registry export (`{"public_key": hex, "label"?, "revoked_at"?}` each).

    All or nothing, so a bad entry leaves no half-imported registry. Returns (added, already present).
    The checks and the chunked insert are `bulk_import`'s, which also streams a file of any size.
    """
    from pinseal_ingest.bulk_import import import_entries  # it imports this module's Table

    return import_entries(conn, "devices", entries, now=now)


def resolver(conn: Database, table: Table) -> Callable[[bytes], Ed25519PublicKey]:
    """kid -> public key for the protocol verifiers; raises UnknownDevice or Revoked."""
    what = "gateway" if table == "gateways" else "device"

    def resolve(kid: bytes) -> Ed25519PublicKey:
        row = conn.execute(f"SELECT public_key, revoked_at FROM {table} WHERE kid = ?", (kid,)).fetchone()
        if row is None:
            raise UnknownDevice(f"{what} {kid.hex()} is not registered")
        if row[1] is not None:
            raise Revoked(f"{what} {kid.hex()} was revoked")
        return keys.load_public_key(row[0])

    return resolve
