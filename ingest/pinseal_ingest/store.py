"""Reading and writing accepted batches, their leaves and bundles, and rejections.

Writes happen inside the caller's transaction (`accept` opens it), so a batch lands whole or not at
all. `relevant_bundles` gives `history.classify` only the stored bundles that can change its verdict,
found through indexes, so checking a bundle costs the same after a year of history as on day one.
"""

import sqlite3
from dataclasses import dataclass
from typing import Any

from pinseal_ingest.db import seq_key, seq_value
from pinseal_protocol import retention
from pinseal_protocol.batch import BatchHeader, Mode
from pinseal_protocol.bundle import Bundle
from pinseal_protocol.history import StoredBundle

# The evidence kept with a rejection is bounded: a bundle (2 KiB) or a header (1 KiB) fits.
MAX_EVIDENCE = 4096


@dataclass(frozen=True)
class ChainHead:
    """A gateway's latest stored batch."""

    batch_no: int
    batch_hash: bytes


def chain_head(conn: sqlite3.Connection, gateway_kid: bytes) -> ChainHead | None:
    row = conn.execute(
        "SELECT batch_no, hash FROM batches WHERE gateway_kid = ? ORDER BY batch_no DESC LIMIT 1",
        (gateway_kid,),
    ).fetchone()
    return ChainHead(row[0], row[1]) if row else None


def has_batch(conn: sqlite3.Connection, batch_hash: bytes) -> bool:
    return conn.execute("SELECT 1 FROM batches WHERE hash = ?", (batch_hash,)).fetchone() is not None


def committed_batch(conn: sqlite3.Connection, bundle_hash: bytes) -> bytes | None:
    """The hash of the stored batch that already holds this bundle as a leaf, if any."""
    row = conn.execute("SELECT batch_hash FROM leaves WHERE bundle_hash = ?", (bundle_hash,)).fetchone()
    return row[0] if row else None


_INDEX_COLUMNS = "seq, last_seq, prev, hash"


def relevant_bundles(conn: sqlite3.Connection, candidate: Bundle) -> list[StoredBundle]:
    """The stored bundles of the candidate's device that `history.classify` needs to judge it.

    classify looks at: a bundle with the same hash (duplicate); bundles overlapping its readings
    (conflict; stored bundles never overlap each other, so these are the ones starting inside its range
    plus the last one starting before it); the highest stored bundle (high-water); and the neighbours a
    missing link would have (prev = its link, link = its prev, prev = its prev). Its verdict over this
    subset equals its verdict over all the device's bundles.
    """
    kid = candidate.kid
    first, last = seq_key(candidate.seq), seq_key(candidate.last_seq)
    queries: list[tuple[str, tuple[Any, ...]]] = [
        ("hash = ?", (candidate.bundle_hash,)),
        ("kid = ? AND seq BETWEEN ? AND ?", (kid, first, last)),
        ("kid = ? AND seq < ? ORDER BY seq DESC LIMIT 1", (kid, first)),
        ("kid = ? ORDER BY seq DESC LIMIT 1", (kid,)),
        ("kid = ? AND prev = ?", (kid, candidate.link)),
        ("kid = ? AND link = ?", (kid, candidate.prev)),
        ("kid = ? AND prev = ?", (kid, candidate.prev)),
    ]
    found: dict[bytes, StoredBundle] = {}
    for where, params in queries:
        for seq, last_seq, prev, hash_ in conn.execute(
            f"SELECT {_INDEX_COLUMNS} FROM bundles WHERE {where}", params
        ):
            found[hash_] = StoredBundle(seq_value(seq), seq_value(last_seq), prev, hash_)
    return list(found.values())


def high_water(conn: sqlite3.Connection, kid: bytes) -> int | None:
    """The last sequence number of the device's highest stored bundle (stored bundles never overlap)."""
    row = conn.execute(
        "SELECT last_seq FROM bundles WHERE kid = ? ORDER BY seq DESC LIMIT 1", (kid,)
    ).fetchone()
    return None if row is None else seq_value(row[0])


def insert_bundle(conn: sqlite3.Connection, bundle: Bundle) -> None:
    conn.execute(
        "INSERT INTO bundles (hash, kid, seq, last_seq, prev, link, n_readings, raw)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            bundle.bundle_hash,
            bundle.kid,
            seq_key(bundle.seq),
            seq_key(bundle.last_seq),
            bundle.prev,
            bundle.link,
            bundle.n_readings,
            bundle.raw,
        ),
    )


def insert_batch(
    conn: sqlite3.Connection, header: BatchHeader, mode: Mode, leaves: list[bytes], received_at: float
) -> None:
    """The batch row and one leaf row per bundle hash, in leaf order."""
    conn.execute(
        "INSERT INTO batches (hash, gateway_kid, batch_no, prev_hash, root, count, first_received,"
        " last_received, mode, header, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            header.batch_hash,
            header.gateway_kid,
            header.batch_no,
            header.prev_hash,
            header.root,
            header.count,
            header.first_received,
            header.last_received,
            mode,
            header.raw,
            received_at,
        ),
    )
    conn.executemany(
        "INSERT INTO leaves (bundle_hash, batch_hash, leaf_index) VALUES (?, ?, ?)",
        ((leaf, header.batch_hash, i) for i, leaf in enumerate(leaves)),
    )


def record_rejection(
    conn: sqlite3.Connection,
    *,
    reason: str,
    detail: str,
    received_at: float,
    gateway_kid: bytes | None = None,
    batch_hash: bytes | None = None,
    bundle_index: int | None = None,
    evidence: bytes | None = None,
) -> None:
    """One rejection, in its own transaction (the batch's own was rolled back)."""
    if evidence is not None and len(evidence) > MAX_EVIDENCE:
        evidence = None
    conn.execute(
        "INSERT INTO rejections (received_at, reason, detail, gateway_kid, batch_hash, bundle_index,"
        " evidence) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (received_at, reason, detail[:1000], gateway_kid, batch_hash, bundle_index, evidence),
    )


def batch_info(conn: sqlite3.Connection, batch_hash: bytes) -> dict[str, Any] | None:
    """A stored batch as JSON-ready fields."""
    row = conn.execute(
        "SELECT hash, gateway_kid, batch_no, prev_hash, root, count, first_received, last_received, mode,"
        " header, received_at FROM batches WHERE hash = ?",
        (batch_hash,),
    ).fetchone()
    if row is None:
        return None
    names = (
        "batch_hash",
        "gateway",
        "batch_no",
        "prev_hash",
        "root",
        "count",
        "first_received",
        "last_received",
        "mode",
        "header",
        "received_at",
    )
    return {
        name: value.hex() if isinstance(value, bytes) else value
        for name, value in zip(names, row, strict=True)
    }


def bundle_info(conn: sqlite3.Connection, bundle_hash: bytes) -> dict[str, Any] | None:
    """A committed bundle: its batch and leaf index, and its body if the batch carried bodies."""
    leaf = conn.execute(
        "SELECT batch_hash, leaf_index FROM leaves WHERE bundle_hash = ?", (bundle_hash,)
    ).fetchone()
    if leaf is None:
        return None
    info: dict[str, Any] = {
        "bundle_hash": bundle_hash.hex(),
        "batch_hash": leaf[0].hex(),
        "leaf_index": leaf[1],
    }
    row = conn.execute(
        "SELECT kid, seq, last_seq, prev, n_readings, raw FROM bundles WHERE hash = ?", (bundle_hash,)
    ).fetchone()
    if row is None:
        info["body"] = None
    else:
        kid, seq, last_seq, prev, n_readings, raw = row
        info.update(
            device=kid.hex(),
            seq=seq_value(seq),
            last_seq=seq_value(last_seq),
            prev=prev.hex(),
            n_readings=n_readings,
            body=raw.hex(),
        )
    return info


def counts(conn: sqlite3.Connection) -> dict[str, Any]:
    """Totals for `pinseal-ingest stats`."""

    def scalar(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0])

    rejections = dict(
        conn.execute("SELECT reason, COUNT(*) FROM rejections GROUP BY reason ORDER BY reason").fetchall()
    )
    return {
        "gateways": scalar("SELECT COUNT(*) FROM gateways WHERE revoked_at IS NULL"),
        "gateways_revoked": scalar("SELECT COUNT(*) FROM gateways WHERE revoked_at IS NOT NULL"),
        "devices": scalar("SELECT COUNT(*) FROM devices WHERE revoked_at IS NULL"),
        "devices_revoked": scalar("SELECT COUNT(*) FROM devices WHERE revoked_at IS NOT NULL"),
        "batches": scalar("SELECT COUNT(*) FROM batches"),
        "leaves": scalar("SELECT COUNT(*) FROM leaves"),
        "bundles": scalar("SELECT COUNT(*) FROM bundles"),
        "readings": scalar("SELECT COALESCE(SUM(n_readings), 0) FROM bundles"),
        "rejections": rejections,
        "rejections_unstored": {
            f"{reason}/{why}": n for (reason, why), n in sorted(retention.unstored(conn).items())
        },
    }
