"""Reading and writing accepted batches, their leaves and bundles, and rejections.

Writes happen inside the caller's transaction (`accept` opens it), so a batch lands whole or not at
all. `relevant_bundles` gives `history.classify` only the stored bundles that can change its verdict,
found through indexes, so checking a bundle costs the same after a year of history as on day one.

A leaf with a row in `bundles` is one whose device signature the ingest verified itself; a leaf without
one (committed by a "proofs" batch) is held on its gateway's signed word only (`verified_by`).
"""

from dataclasses import dataclass
from typing import Any

from pinseal_ingest.db import seq_key, seq_value
from pinseal_ingest.storage import Database
from pinseal_ingest.storage.migrations import first_reading_time
from pinseal_protocol import retention
from pinseal_protocol.batch import BatchHeader, Mode, TimeFlags
from pinseal_protocol.bundle import Bundle
from pinseal_protocol.history import StoredBundle

# The evidence kept with a rejection is bounded: a bundle (2 KiB) or a header (1 KiB) fits.
MAX_EVIDENCE = 4096


@dataclass(frozen=True)
class ChainHead:
    """A gateway's latest stored batch."""

    batch_no: int
    batch_hash: bytes


def chain_head(conn: Database, gateway_kid: bytes) -> ChainHead | None:
    row = conn.execute(
        "SELECT batch_no, hash FROM batches WHERE gateway_kid = ? ORDER BY batch_no DESC LIMIT 1",
        (gateway_kid,),
    ).fetchone()
    return ChainHead(row[0], row[1]) if row else None


def has_batch(conn: Database, batch_hash: bytes) -> bool:
    return conn.execute("SELECT 1 FROM batches WHERE hash = ?", (batch_hash,)).fetchone() is not None


def committed_batch(conn: Database, bundle_hash: bytes) -> bytes | None:
    """The hash of the stored batch that already holds this bundle as a leaf, if any."""
    row = conn.execute("SELECT batch_hash FROM leaves WHERE bundle_hash = ?", (bundle_hash,)).fetchone()
    return row[0] if row else None


_INDEX_COLUMNS = "seq, last_seq, prev, hash"


def relevant_bundles(conn: Database, candidate: Bundle) -> list[StoredBundle]:
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


def high_water(conn: Database, kid: bytes) -> int | None:
    """The last sequence number of the device's highest stored bundle (stored bundles never overlap)."""
    row = conn.execute(
        "SELECT last_seq FROM bundles WHERE kid = ? ORDER BY seq DESC LIMIT 1", (kid,)
    ).fetchone()
    return None if row is None else seq_value(row[0])


def insert_bundle(conn: Database, bundle: Bundle, time_flag: str | None = None) -> None:
    """A bundle the ingest verified itself, with its own verdict on the reading times."""
    t = first_reading_time(bundle)
    conn.need_partition(t)
    conn.execute(
        "INSERT INTO bundles (hash, t, kid, seq, last_seq, prev, link, n_readings, raw, ingest_time_flag)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            bundle.bundle_hash,
            t,
            bundle.kid,
            seq_key(bundle.seq),
            seq_key(bundle.last_seq),
            bundle.prev,
            bundle.link,
            bundle.n_readings,
            bundle.raw,
            time_flag,
        ),
    )


def insert_batch(
    conn: Database,
    header: BatchHeader,
    mode: Mode,
    leaves: list[bytes],
    received_at: float,
    time_flags: TimeFlags | None = None,
) -> None:
    """The batch row and one leaf row per bundle hash, in leaf order, with the gateway's signed flags."""
    conn.execute(
        "INSERT INTO batches (hash, gateway_kid, batch_no, prev_hash, root, count, first_received,"
        " last_received, mode, header, received_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            header.version,
        ),
    )
    flags = time_flags or {}
    conn.executemany(
        "INSERT INTO leaves (bundle_hash, batch_hash, leaf_index, gateway_time_flag) VALUES (?, ?, ?, ?)",
        ((leaf, header.batch_hash, i, flags.get(i)) for i, leaf in enumerate(leaves)),
    )


@dataclass(frozen=True)
class ReceiveWindow:
    """The signed receive window of the batch that committed a leaf (the reference for its times)."""

    first_received: int
    last_received: int


def unverified_leaf(conn: Database, bundle_hash: bytes) -> ReceiveWindow | None:
    """The committing batch's window if this bundle is a leaf the ingest holds only a gateway's word for."""
    row = conn.execute(
        "SELECT b.first_received, b.last_received FROM leaves l JOIN batches b ON b.hash = l.batch_hash"
        " WHERE l.bundle_hash = ? AND NOT EXISTS (SELECT 1 FROM bundles u WHERE u.hash = l.bundle_hash)",
        (bundle_hash,),
    ).fetchone()
    return None if row is None else ReceiveWindow(int(row[0]), int(row[1]))


def _verified_by(has_body: object) -> str:
    return "ingest" if has_body else "gateway"


def _time_flag(gateway: str | None, ingest: str | None) -> dict[str, str | None]:
    return {"gateway": gateway, "ingest": ingest}


_LEAF_TRUST = (
    "SELECT l.leaf_index, l.bundle_hash, u.hash IS NOT NULL, l.gateway_time_flag, u.ingest_time_flag"
    " FROM leaves l LEFT JOIN bundles u ON u.hash = l.bundle_hash WHERE l.batch_hash = ?"
)


def verified_by_counts(conn: Database, batch_hash: bytes) -> dict[str, int]:
    """How many of a batch's leaves the ingest verified itself and how many it holds on the gateway's word."""
    total, verified = conn.execute(
        "SELECT COUNT(*), COUNT(u.hash) FROM leaves l LEFT JOIN bundles u ON u.hash = l.bundle_hash"
        " WHERE l.batch_hash = ?",
        (batch_hash,),
    ).fetchone()
    return {"ingest": int(verified), "gateway": int(total) - int(verified)}


def flagged_leaves(conn: Database, batch_hash: bytes, limit: int) -> list[dict[str, Any]]:
    """The batch's leaves with a time flag from either side, in leaf order (at most `limit`)."""
    rows = conn.execute(
        f"{_LEAF_TRUST} AND (l.gateway_time_flag IS NOT NULL OR u.ingest_time_flag IS NOT NULL)"
        " ORDER BY l.leaf_index LIMIT ?",
        (batch_hash, limit),
    ).fetchall()
    return [
        {"leaf_index": i, "bundle_hash": h.hex(), "gateway": gateway, "ingest": ingest}
        for i, h, _, gateway, ingest in rows
    ]


def leaves_info(conn: Database, batch_hash: bytes) -> list[dict[str, Any]]:
    """Every leaf of a batch: who verified it and both sides' time flags."""
    rows = conn.execute(f"{_LEAF_TRUST} ORDER BY l.leaf_index", (batch_hash,)).fetchall()
    return [
        {
            "leaf_index": i,
            "bundle_hash": h.hex(),
            "verified_by": _verified_by(has_body),
            "time_flag": _time_flag(gateway, ingest),
        }
        for i, h, has_body, gateway, ingest in rows
    ]


def record_rejection(
    conn: Database,
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


def batch_info(conn: Database, batch_hash: bytes) -> dict[str, Any] | None:
    """A stored batch as JSON-ready fields."""
    row = conn.execute(
        "SELECT hash, gateway_kid, batch_no, prev_hash, root, count, first_received, last_received, mode,"
        " header, received_at, version FROM batches WHERE hash = ?",
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
        "version",
    )
    info = {
        name: value.hex() if isinstance(value, bytes) else value
        for name, value in zip(names, row, strict=True)
    }
    info["verified_by"] = verified_by_counts(conn, batch_hash)
    info["leaves"] = leaves_info(conn, batch_hash)
    return info


def bundle_info(conn: Database, bundle_hash: bytes) -> dict[str, Any] | None:
    """A committed bundle: its batch and leaf index, who verified it, both sides' time flags, and its
    body if the ingest has it (then it verified the device signature itself)."""
    leaf = conn.execute(
        "SELECT batch_hash, leaf_index, gateway_time_flag FROM leaves WHERE bundle_hash = ?", (bundle_hash,)
    ).fetchone()
    if leaf is None:
        return None
    info: dict[str, Any] = {
        "bundle_hash": bundle_hash.hex(),
        "batch_hash": leaf[0].hex(),
        "leaf_index": leaf[1],
    }
    row = conn.execute(
        "SELECT kid, seq, last_seq, prev, n_readings, raw, ingest_time_flag FROM bundles WHERE hash = ?",
        (bundle_hash,),
    ).fetchone()
    info["verified_by"] = _verified_by(row is not None)
    info["time_flag"] = _time_flag(leaf[2], None if row is None else row[6])
    if row is None:
        info["body"] = None
    else:
        kid, seq, last_seq, prev, n_readings, raw, _ = row
        info.update(
            device=kid.hex(),
            seq=seq_value(seq),
            last_seq=seq_value(last_seq),
            prev=prev.hex(),
            n_readings=n_readings,
            body=raw.hex(),
        )
    return info


def counts(conn: Database) -> dict[str, Any]:
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
        "time_flagged": {
            "gateway": scalar("SELECT COUNT(*) FROM leaves WHERE gateway_time_flag IS NOT NULL"),
            "ingest": scalar("SELECT COUNT(*) FROM bundles WHERE ingest_time_flag IS NOT NULL"),
        },
        "rejections": rejections,
        "rejections_unstored": {
            f"{reason}/{why}": n for (reason, why), n in sorted(retention.unstored(conn).items())
        },
    }
