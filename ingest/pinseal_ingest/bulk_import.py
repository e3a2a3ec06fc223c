"""Registering devices or gateways in bulk: a provisioning export of a million keys, streamed.

The file is read entry by entry (`jsonstream`), each entry checked as `registry.import_devices` always
has (its messages, prefixed `entry {i}:`), and the rows written through `Database.bulk_insert` in chunks
of `CHUNK_ROWS` (COPY on PostgreSQL), all inside one transaction: a bad entry at index 900,000 leaves
nothing imported, and the error names it. Keys already registered are left as they are and counted, so
running an import twice adds nothing.

What one entry costs is its key check. `keys.check_public_key` (pure Python point arithmetic, 1.3 ms)
would take 22 minutes for a million keys; libsodium's `crypto_core_ed25519_is_valid_point` (43 us) checks
the same properties (canonical encoding, on the curve, not of small order, in the prime-order subgroup),
so a key it accepts is one the reference accepts too (test_ingest_bulk_import.py holds it to that); a key
it refuses goes to the reference, which then decides and says why. The verdict is the reference's on
every key, the cost libsodium's on every honest one.

On SQLite the import holds the file's write lock for its whole run (a million devices: about a minute),
during which the ingest's writers on the same file wait; PostgreSQL's concurrent writers do not wait
(the rows are invisible until the commit, and only a key being added by both at once is serialised).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import IO, Any

from nacl.bindings import crypto_core_ed25519_is_valid_point

from pinseal_ingest.jsonstream import CHUNK_CHARS, iter_entries
from pinseal_ingest.registry import Table
from pinseal_ingest.storage import Database
from pinseal_protocol import certificate, keys, labels

CHUNK_ROWS = 10_000
COLUMNS = ("kid", "public_key", "label", "added_at", "revoked_at")

Row = tuple[bytes, bytes, str | None, float, float | None]


def check_public_key(raw: bytes) -> bytes:
    """`keys.check_public_key`'s verdict, at libsodium's speed for every valid key."""
    if len(raw) == keys.PUBLIC_KEY_SIZE and crypto_core_ed25519_is_valid_point(raw):
        return raw
    return keys.check_public_key(raw)  # refused by libsodium: the reference decides, and says why


def parse_public_key(text: str) -> bytes:
    """`registry.parse_public_key`, with the fast check."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError as exc:
        shown = text if len(text) <= 100 else text[:100] + "..."
        raise ValueError(f"not a 32-byte Ed25519 public key in hex: {shown!r}") from exc
    return check_public_key(raw)


def check_entry(i: int, entry: Any, now: float) -> Row:
    """One registry entry as a row, or ValueError `entry {i}: why` (the checks of `import_devices`)."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("public_key"), str):
        raise ValueError(f'entry {i}: needs a "public_key" in hex')
    label = entry.get("label")
    revoked_at = entry.get("revoked_at")
    if revoked_at is None and entry.get("revoked") is True:
        revoked_at = now
    if label is not None and not isinstance(label, str):
        raise ValueError(f"entry {i}: label must be text")
    if label is not None:
        try:
            labels.check_label(label)
        except ValueError as exc:
            raise ValueError(f"entry {i}: {exc}") from exc
    if revoked_at is not None and not isinstance(revoked_at, int | float):
        raise ValueError(f"entry {i}: revoked_at must be a Unix time")
    try:
        public_key = parse_public_key(entry["public_key"])
    except ValueError as exc:
        raise ValueError(f"entry {i}: {exc}") from exc
    return keys.key_id(public_key), public_key, label, now, revoked_at


def check_certificate(i: int, entry: Mapping[str, Any], public_key: bytes, fleet_key: bytes) -> None:
    """The entry's device certificate (its `certificate`, hex, as provisioning exports it) is signed by
    the fleet key and certifies this very public key; ValueError `entry {i}: why` otherwise.

    With a fleet key, the operator registers devices because their fleet vouches for them, not because
    a list says so: a key slipped into an export without the fleet's signature is refused.
    """
    text = entry.get("certificate")
    if not isinstance(text, str):
        raise ValueError(f'entry {i}: needs a "certificate" (hex) when a fleet key is given')
    try:
        certified = certificate.verify(bytes.fromhex(text), fleet_key)
    except ValueError as exc:
        raise ValueError(f"entry {i}: certificate: {exc}") from exc
    if certified.public_key != public_key:
        raise ValueError(f"entry {i}: the certificate is for another key ({certified.key_id.hex()})")


def import_entries(
    db: Database,
    table: Table,
    entries: Iterable[Any],
    *,
    now: float | None = None,
    chunk_rows: int = CHUNK_ROWS,
    fleet_key: bytes | None = None,
) -> tuple[int, int]:
    """Register every entry, all or nothing; returns (added, already registered).

    `entries` is consumed as it is checked and inserted: pass a generator (`iter_entries`) and a file
    of any size is imported in the memory of one chunk of rows."""
    when = time.time() if now is None else now
    total = added = 0
    rows: list[Row] = []
    with db.transaction():
        for i, entry in enumerate(entries):
            row = check_entry(i, entry, when)
            if fleet_key is not None:
                check_certificate(i, entry, row[1], fleet_key)
            rows.append(row)
            if len(rows) >= chunk_rows:
                added += db.bulk_insert(table, COLUMNS, rows)
                total, rows = total + len(rows), []
        if rows:
            added += db.bulk_insert(table, COLUMNS, rows)
            total += len(rows)
    return added, total - added


def import_stream(
    db: Database,
    table: Table,
    stream: IO[str],
    *,
    now: float | None = None,
    chunk_chars: int = CHUNK_CHARS,
    fleet_key: bytes | None = None,
) -> tuple[int, int]:
    """Register the entries of a registry file (JSON array, `{"<table>": [...]}` or JSON Lines)."""
    entries = iter_entries(stream.read, wrapper=table, chunk_chars=chunk_chars)
    return import_entries(db, table, entries, now=now, fleet_key=fleet_key)
