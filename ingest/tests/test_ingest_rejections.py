"""An anonymous POST flood leaves the ingest's database bounded, every rejection still counted, and a
registered gateway's own rejections still recorded (issue 11 #8a)."""

import sqlite3
from pathlib import Path

from ingest_fixtures import Gateway, IngestServer, key, register, rejection_rows, sim_device

FLOOD = 1500
STORED_AT_MOST = 300  # the per-address burst (200) and its refill during the flood


def size_after_checkpoint(db: Path) -> int:
    """The database's size with its WAL written back (the WAL itself is bounded by SQLite's
    autocheckpoint, ~4 MB, whatever is stored)."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in db.parent.iterdir() if p.name.startswith(db.name))


def metric(server: IngestServer, line_start: str) -> float:
    for line in server.get("/metrics").body.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_an_anonymous_post_flood_leaves_the_database_bounded(tmp_path: Path) -> None:
    db = tmp_path / "ingest.sqlite"
    gateway, device = Gateway(key(1)), sim_device(2)
    register(db, gateways=[gateway], devices=[device])
    with IngestServer(db) as server:
        before = size_after_checkpoint(db)
        for _ in range(FLOOD):
            assert server.post(b"\xff" * 512).status == 400
        grown = size_after_checkpoint(db) - before
        # the registered gateway's rejected batch is still recorded, under its own budget
        response = server.send(gateway.make([sim_device(9).seal()]))
        assert response.status == 422
        rows = rejection_rows(db)
        assert len(rows) <= STORED_AT_MOST + 1 and rows[-1][0] == "unknown_device"
        malformed = sum(1 for r in rows if r[0] == "malformed")
        assert metric(server, 'pinseal_ingest_batches_rejected_total{reason="malformed"}') == FLOOD
        unstored = metric(server, 'pinseal_ingest_rejections_unstored{reason="malformed",why="rate_limited"}')
        assert malformed + unstored == FLOOD
    assert grown < 256 * 1024, f"the database grew {grown} bytes"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def stored_reasons(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM rejections").fetchone()[0])


def test_many_addresses_share_one_budget_a_registered_gateway_keeps_its_own(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from pinseal_ingest import db as ingest_db
    from pinseal_ingest import registry
    from pinseal_ingest.accept import Rejection
    from pinseal_ingest.rejections import RejectionPolicy
    from pinseal_protocol import keys, retention

    conn = ingest_db.connect(tmp_path / "ingest.sqlite")
    gateway = Gateway(key(1))
    registry.add(conn, "gateways", bytes.fromhex(gateway.public_hex))
    policy = RejectionPolicy(
        CollectorRegistry(), burst=5, anonymous_burst=50, anonymous_rate_per_s=0.0, clock=Clock()
    )
    now = 1_000_000.0
    for i in range(100):  # 100 addresses, 5 garbage requests each: 50 rows at most between them
        for _ in range(5):
            policy.record(conn, Rejection("malformed", "x"), now, f"10.0.{i // 256}.{i % 256}")
    assert stored_reasons(conn) == 50
    kid = keys.key_id(bytes.fromhex(gateway.public_hex))
    assert policy.record(conn, Rejection("chain_gap", "y", gateway_kid=kid), now, "10.0.0.1")
    policy.flush(conn, now)
    assert retention.unstored(conn) == {("malformed", "rate_limited"): 450}
    conn.close()


def test_ipv6_clients_are_one_source_per_64() -> None:
    from pinseal_ingest.rejections import client_source

    assert client_source("2001:db8:1:2::1") == client_source("2001:db8:1:2:ffff::9")
    assert client_source("2001:db8:1:3::1") != client_source("2001:db8:1:2::1")
    assert client_source("::ffff:192.0.2.7") == client_source("192.0.2.7") == ("client", "192.0.2.7")
    assert client_source(None) == ("client", None)


def test_retention_prunes_and_tallies(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from pinseal_ingest import db as ingest_db
    from pinseal_ingest.accept import Rejection
    from pinseal_ingest.rejections import RejectionPolicy
    from pinseal_protocol import retention

    conn = ingest_db.connect(tmp_path / "ingest.sqlite")
    policy = RejectionPolicy(
        CollectorRegistry(), max_rows=10, max_age_s=3600, prune_every_s=60, clock=Clock()
    )
    now = 1_000_000.0
    for i in range(30):
        policy.record(conn, Rejection("malformed", "x"), now, f"10.0.0.{i}")
    assert stored_reasons(conn) == 30  # the first record pruned an empty table; none due since
    now += 61
    policy.record(conn, Rejection("malformed", "x"), now, "10.0.1.1")
    # the new row is written first, then all but the newest 10 are pruned
    assert stored_reasons(conn) == 10 and retention.unstored(conn) == {("malformed", "pruned"): 21}
    now += 3600
    policy.record(conn, Rejection("malformed", "x"), now, "10.0.1.2")
    assert stored_reasons(conn) == 2 and retention.unstored(conn) == {("malformed", "pruned"): 30}
    conn.close()
