"""The ingest's hot-path queries and their PostgreSQL plans on a filled database.

`fill` writes a network's worth of synthetic rows server-side (generate_series: no signing, the plans
depend on the rows' shape, not their signatures), spread over eight partitions of `bundles` (six
months and both edge partitions). `plans` runs EXPLAIN on every query of `QUERIES`, as a custom plan
(the parameters' values known) and as the generic plan psycopg's prepared statements may switch to
after five runs. test_ingest_plans.py asserts that each is index scans only; `python explain_plans.py`
prints them for docs/network-queries.md:

    .venv/bin/python ingest/tests/explain_plans.py [--rows 100000] > plans.md

The SQL is the ingest's own text (store.py, registry.py, queries.py), copied: a query changed there
and not here is caught by nothing, so change both.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pinseal_ingest import queries
from pinseal_ingest.storage import Database
from pinseal_ingest.storage.postgres import PostgresDatabase

MONTH_S = 31 * 86400
T_2023 = 1_672_531_200  # 2023-01-01: months Jan..Jun at +0, +31, ... +155 days
EDGE_TIMES = (0, 4_200_000_000)  # before 2000 and from 2100: the edge partitions
TABLES = ("bundles", "leaves", "devices", "gateways", "batches")


@dataclass(frozen=True)
class Sample:
    """Parameters taken from rows that exist: a device with bundles, one of its bundles, its batch."""

    kid: bytes
    bundle_hash: bytes
    seq: bytes
    prev: bytes
    link: bytes
    batch_hash: bytes
    gateway_kid: bytes


@dataclass(frozen=True)
class Query:
    name: str
    used_by: str
    sql: str
    params: Callable[[Sample], tuple[Any, ...]]
    index: str  # a substring of the name of the index it must use (each partition's, for bundles)


REL = "SELECT seq, last_seq, prev, hash FROM bundles WHERE "
_LEAF_TRUST = (
    "SELECT l.leaf_index, l.bundle_hash, u.hash IS NOT NULL, l.gateway_time_flag, u.ingest_time_flag"
    " FROM leaves l LEFT JOIN bundles u ON u.hash = l.bundle_hash WHERE l.batch_hash = ?"
)
QUERIES: tuple[Query, ...] = (
    Query(
        "device key",
        "registry.resolver (every bundle)",
        "SELECT public_key, revoked_at FROM devices WHERE kid = ?",
        lambda s: (s.kid,),
        "devices_pkey",
    ),
    Query(
        "gateway key",
        "registry.resolver (every batch)",
        "SELECT public_key, revoked_at FROM gateways WHERE kid = ?",
        lambda s: (s.gateway_kid,),
        "gateways_pkey",
    ),
    Query(
        "batch stored?",
        "store.has_batch",
        "SELECT 1 FROM batches WHERE hash = ?",
        lambda s: (s.batch_hash,),
        "batches_pkey",
    ),
    Query(
        "chain head",
        "store.chain_head",
        "SELECT batch_no, hash FROM batches WHERE gateway_kid = ? ORDER BY batch_no DESC LIMIT 1",
        lambda s: (s.gateway_kid,),
        "batches_gateway_kid_batch_no_key",
    ),
    Query(
        "committed leaf",
        "store.committed_batch",
        "SELECT batch_hash FROM leaves WHERE bundle_hash = ?",
        lambda s: (s.bundle_hash,),
        "leaves_pkey",
    ),
    Query(
        "relevant 1: same hash",
        "store.relevant_bundles",
        REL + "hash = ?",
        lambda s: (s.bundle_hash,),
        "pkey",
    ),
    Query(
        "relevant 2: inside the range",
        "store.relevant_bundles",
        REL + "kid = ? AND seq BETWEEN ? AND ?",
        lambda s: (s.kid, s.seq, s.seq),
        "kid_seq",
    ),
    Query(
        "relevant 3: the one before",
        "store.relevant_bundles",
        REL + "kid = ? AND seq < ? ORDER BY seq DESC LIMIT 1",
        lambda s: (s.kid, s.seq),
        "kid_seq",
    ),
    Query(
        "relevant 4: the highest",
        "store.relevant_bundles",
        REL + "kid = ? ORDER BY seq DESC LIMIT 1",
        lambda s: (s.kid,),
        "kid_seq",
    ),
    Query(
        "relevant 5: prev = its link",
        "store.relevant_bundles",
        REL + "kid = ? AND prev = ?",
        lambda s: (s.kid, s.link),
        "kid_prev",
    ),
    Query(
        "relevant 6: link = its prev",
        "store.relevant_bundles",
        REL + "kid = ? AND link = ?",
        lambda s: (s.kid, s.prev),
        "kid_link",
    ),
    Query(
        "relevant 7: prev = its prev",
        "store.relevant_bundles",
        REL + "kid = ? AND prev = ?",
        lambda s: (s.kid, s.prev),
        "kid_prev",
    ),
    Query(
        "high water",
        "store.high_water",
        "SELECT last_seq FROM bundles WHERE kid = ? ORDER BY seq DESC LIMIT 1",
        lambda s: (s.kid,),
        "kid_seq",
    ),
    Query(
        "leaf on the gateway's word",
        "store.unverified_leaf",
        "SELECT b.first_received, b.last_received FROM leaves l JOIN batches b ON b.hash = l.batch_hash"
        " WHERE l.bundle_hash = ? AND NOT EXISTS (SELECT 1 FROM bundles u WHERE u.hash = l.bundle_hash)",
        lambda s: (s.bundle_hash,),
        "leaves_pkey",
    ),
    Query(
        "verified-by counts",
        "store.verified_by_counts (every answer)",
        "SELECT COUNT(*), COUNT(u.hash) FROM leaves l LEFT JOIN bundles u ON u.hash = l.bundle_hash"
        " WHERE l.batch_hash = ?",
        lambda s: (s.batch_hash,),
        "leaves_batch_hash_leaf_index_key",
    ),
    Query(
        "flagged leaves",
        "store.flagged_leaves (every answer)",
        _LEAF_TRUST + " AND (l.gateway_time_flag IS NOT NULL OR u.ingest_time_flag IS NOT NULL)"
        " ORDER BY l.leaf_index LIMIT ?",
        lambda s: (s.batch_hash, 256),
        "leaves_batch_hash_leaf_index_key",
    ),
    Query(
        "readings page",
        "queries.device_readings",
        queries._READINGS,
        lambda s: (s.kid, s.seq, 100),
        "kid_seq",
    ),
    Query(
        "proof 1: the leaf",
        "queries.bundle_proof",
        "SELECT batch_hash, leaf_index FROM leaves WHERE bundle_hash = ?",
        lambda s: (s.bundle_hash,),
        "leaves_pkey",
    ),
    Query(
        "proof 2: the batch's leaves",
        "queries.bundle_proof",
        "SELECT bundle_hash FROM leaves WHERE batch_hash = ? ORDER BY leaf_index",
        lambda s: (s.batch_hash,),
        "leaves_batch_hash_leaf_index_key",
    ),
    Query(
        "proof 3: the header",
        "queries.bundle_proof",
        "SELECT header FROM batches WHERE hash = ?",
        lambda s: (s.batch_hash,),
        "batches_pkey",
    ),
    Query(
        "proof 4: the body",
        "queries.bundle_proof, store.bundle_info",
        "SELECT raw FROM bundles WHERE hash = ?",
        lambda s: (s.bundle_hash,),
        "pkey",
    ),
)


def _hash(prefix: str, expr: str, length: int = 32) -> str:
    digest = f"sha256(convert_to('{prefix}' || ({expr})::text, 'UTF8'))"
    return digest if length == 32 else f"substring({digest} from 1 for {length})"


def fill(db: PostgresDatabase, rows: int = 100_000, devices: int | None = None) -> Sample:
    """`rows` bundles and leaves (5 to a batch) of `devices` devices (default: 5 bundles each), a gateway
    per 20 batches. Few devices with long chains and many with short ones get different plans for the
    readings page (an ordered index scan, or sorting the device's few rows): both are checked."""
    devices, batches = devices or max(rows // 5, 1), max(rows // 5, 1)
    registered = max(devices, rows // 5)  # a tiny registry is read whole, rightly: keep it network-sized
    gateways = max(batches // 20, 1)
    for month in range(1, 7):
        db.ensure_partition((2023, month))
    times = [str(T_2023 + k * MONTH_S) for k in range(6)] + [str(t) for t in EDGE_TIMES]
    zero = "decode('00', 'hex')"
    statements = [
        f"INSERT INTO gateways (kid, public_key, added_at) SELECT {_hash('g', 'i', 16)}, {_hash('G', 'i')}, 0"
        f" FROM generate_series(0, {gateways - 1}) i",
        f"INSERT INTO devices (kid, public_key, added_at) SELECT {_hash('d', 'i', 16)}, {_hash('D', 'i')}, 0"
        f" FROM generate_series(0, {registered - 1}) i",
        "INSERT INTO batches (hash, gateway_kid, batch_no, prev_hash, root, count, first_received,"
        " last_received, mode, header, received_at, version)"
        f" SELECT {_hash('b', 'i')}, {_hash('g', f'mod(i, {gateways})', 16)}, i / {gateways}, {zero}, {zero},"
        f" 5, 0, 0, 'bundles', {zero}, 0, 2 FROM generate_series(0, {batches - 1}) i",
        "INSERT INTO leaves (bundle_hash, batch_hash, leaf_index)"
        f" SELECT {_hash('u', 'i')}, {_hash('b', 'i / 5')}, mod(i, 5) FROM generate_series(0, {rows - 1}) i",
        # device d's k-th bundle: seq 3k (3 readings), prev = link of its (k-1)-th
        "INSERT INTO bundles (hash, t, kid, seq, last_seq, prev, link, n_readings, raw)"
        f" SELECT {_hash('u', 'i')}, (ARRAY[{', '.join(times)}]::bigint[])[mod(i, 8) + 1],"
        f" {_hash('d', f'mod(i, {devices})', 16)}, int8send(3 * (i / {devices})),"
        f" int8send(3 * (i / {devices}) + 2), CASE WHEN i < {devices} THEN {_hash('z', '0', 16)}"
        f" ELSE {_hash('u', f'i - {devices}', 16)} END, {_hash('u', 'i', 16)}, 3, {zero}"
        f" FROM generate_series(0, {rows - 1}) i",
        "ANALYZE",
    ]
    with db.transaction():
        for statement in statements[:-1]:
            db.execute(statement)
    db.execute(statements[-1])
    middle = rows // 2
    row = db.execute(
        "SELECT u.kid, u.hash, u.seq, u.prev, u.link, l.batch_hash, b.gateway_kid FROM bundles u"
        " JOIN leaves l ON l.bundle_hash = u.hash JOIN batches b ON b.hash = l.batch_hash WHERE u.hash = ?",
        (db.scalar(f"SELECT {_hash('u', str(middle))}"),),
    ).fetchone()
    return Sample(*(bytes(v) for v in row))


def _literal(value: Any) -> str:
    if isinstance(value, bytes):
        return f"'\\x{value.hex()}'::bytea"
    return str(int(value))


def explain(db: Database, query: Query, sample: Sample, *, generic: bool = False) -> str:
    """The plan as text: custom (EXPLAIN with the values bound) or generic (PREPARE, forced generic)."""
    params = query.params(sample)
    if not generic:
        return "\n".join(row[0] for row in db.execute("EXPLAIN " + query.sql, params).fetchall())
    numbered = iter(range(1, 100))
    prepared = re.sub(r"\?", lambda _: f"${next(numbered)}", query.sql)
    db.execute("SET plan_cache_mode = force_generic_plan")
    db.execute(f"PREPARE pinseal_plan AS {prepared}")
    try:
        args = ", ".join(_literal(p) for p in params)
        return "\n".join(row[0] for row in db.execute(f"EXPLAIN EXECUTE pinseal_plan({args})").fetchall())
    finally:
        db.execute("DEALLOCATE pinseal_plan")
        db.execute("RESET plan_cache_mode")


SCAN = re.compile(
    r"(Seq Scan|Index Only Scan|Index Scan Backward|Index Scan|Bitmap Index Scan|Bitmap Heap Scan)"
    r"(?: using (\S+))? on (\S+)"
)


def problems(plan: str, query: Query, partitions: int) -> list[str]:
    """What is wrong with a plan: a sequential scan of a data table, the expected index missing, or a
    partition of bundles read without an index."""
    found = []
    scans = SCAN.findall(plan)
    for kind, _index, table in scans:
        if kind == "Seq Scan" and table.split("_")[0] in TABLES:
            found.append(f"sequential scan of {table}")
    if query.index not in plan:
        found.append(f"index {query.index} not used")
    reads_bundles = re.search(r"\bbundles\b", query.sql) is not None
    if reads_bundles:
        indexed = {table for kind, _i, table in scans if "Index" in kind and table.startswith("bundles")}
        if len(indexed) < partitions:
            found.append(f"{len(indexed)} of {partitions} bundles partitions read by an index")
    return found


def bundles_partitions(db: Database) -> int:
    return int(db.scalar("SELECT count(*) FROM pg_inherits WHERE inhparent = 'bundles'::regclass"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--devices", type=int, help="default: one per 5 bundles")
    args = parser.parse_args(argv)
    from pinseal_devkit.postgres import PostgresServer
    from pinseal_ingest import db as ingest_db

    with PostgresServer() as server:
        conn = ingest_db.connect(server.create_database("plans"))
        assert isinstance(conn, PostgresDatabase)
        sample = fill(conn, args.rows, args.devices)
        partitions = bundles_partitions(conn)
        devices = conn.scalar("SELECT count(*) FROM devices")
        print(f"<!-- {args.rows} bundles and leaves, {devices} devices, {partitions} bundles partitions -->")
        for query in QUERIES:
            print(f"\n#### {query.name} ({query.used_by})\n\n```sql\n{query.sql}\n```\n\n```")
            plan = explain(conn, query, sample)
            print(plan)
            print("```")
            bad = problems(plan, query, partitions) + problems(
                explain(conn, query, sample, generic=True), query, partitions
            )
            if bad:
                print(f"\n**PROBLEM**: {'; '.join(bad)}")
        print("\n#### not a hot path: `stats` (store.counts)\n\n```")
        started = time.perf_counter()
        conn.scalar("SELECT COUNT(*) FROM bundles")
        took = (time.perf_counter() - started) * 1000
        print("\n".join(row[0] for row in conn.execute("EXPLAIN SELECT COUNT(*) FROM bundles").fetchall()))
        print(f"```\n\n(COUNT(*) of {args.rows} bundles: {took:.0f} ms)")
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
