"""A rejection flood through the real broker and gateway leaves the database bounded, and every
rejection is still counted (issue 11 #8a)."""

from __future__ import annotations

import sqlite3
import time

from pinseal_protocol import bundle as pbundle

FLOOD = 3000
STORED_AT_MOST = 300  # the per-publisher burst (200) and its refill during the flood


def rejections_stored(env) -> int:
    conn = sqlite3.connect(env.config.db_path)
    try:
        return conn.execute("SELECT count(*) FROM rejections").fetchone()[0]
    finally:
        conn.close()


def metric(gateway, name, **labels):
    value = gateway.ctx.metrics.registry.get_sample_value(f"pinseal_gateway_{name}", labels or None)
    return 0 if value is None else value


def test_a_rejection_flood_leaves_the_database_bounded(env, gateway):
    attacker, honest = env.devices[:2]
    flood = env.device_peer(attacker)
    peer = env.device_peer(honest)
    try:
        infos = [flood.publish(attacker.up_topic, b"\x00" * 100, wait=False) for _ in range(FLOOD)]
        for info in infos:
            info.wait_for_publish(30)
        deadline = time.monotonic() + 20
        while metric(gateway, "rejected_total", reason="malformed") < FLOOD and time.monotonic() < deadline:
            time.sleep(0.05)
        # the honest device's own rejections are its own: the attacker's flood used up only its budget
        bad = honest.seal(advance=False)
        peer.send(bad[:-1] + bytes([bad[-1] ^ 1]))
        raw = honest.seal()
        peer.send(raw)
        peer.acks_for({pbundle.bundle_hash(raw)})
    finally:
        flood.close()
        peer.close()
    stored = rejections_stored(env)
    assert stored <= STORED_AT_MOST
    unstored = metric(gateway, "rejections_unstored", reason="malformed", why="rate_limited")
    assert stored - 1 + unstored == FLOOD == metric(gateway, "rejected_total", reason="malformed")
    conn = sqlite3.connect(env.config.db_path)
    try:
        assert conn.execute("SELECT reason FROM rejections WHERE kid = ?", (honest.kid,)).fetchall() == [
            ("bad_signature",)
        ]
    finally:
        conn.close()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_retention_prunes_by_count_and_age_and_tallies_what_it_removed(tmp_path):
    from prometheus_client import CollectorRegistry

    from pinseal_gateway.store import bundles as store
    from pinseal_gateway.store import rejections
    from pinseal_gateway.store.db import Database

    mono, wall = Clock(0.0), Clock(1_000_000.0)
    registry = CollectorRegistry()
    policy = rejections.RejectionPolicy(
        registry, burst=5, max_rows=50, max_age_s=3600, prune_every_s=60, clock=mono, wall_clock=wall
    )
    db = Database(tmp_path / "gateway.sqlite")

    def write(topic: str, n: int) -> None:
        rows = [(None, topic, "malformed", "x", wall.t, b"e") for _ in range(n)]

        def fn(conn):
            with conn:
                conn.executemany(store.INSERT_REJECTION, policy.admit(conn, rows))

        db.run_sync(fn)

    def stored() -> int:
        return db.run_sync(lambda c: c.execute("SELECT count(*) FROM rejections").fetchone()[0])

    def gauge(why: str) -> float:
        value = registry.get_sample_value(
            "pinseal_gateway_rejections_unstored", {"reason": "malformed", "why": why}
        )
        return value or 0.0

    try:
        for i in range(15):  # 15 publishers, 4 rejections each at once: all within their burst
            write(f"pinseal/v1/{i:032x}/up", 4)
        write("pinseal/v1/flood/up", 100)  # 5 stored, 95 rate-limited
        assert (stored(), gauge("rate_limited"), gauge("pruned")) == (65, 95, 0)
        wall.t += 61  # the next write prunes (before its own rows): all but the newest 50
        write("pinseal/v1/late/up", 1)
        assert (stored(), gauge("pruned")) == (51, 15)
        wall.t += 3600  # the first 50 are now older than max_age_s, the late one just not
        write("pinseal/v1/later/up", 1)
        assert (stored(), gauge("pruned")) == (2, 65)
        # stored + tallied = every rejection made: 60 + 100 + 1 + 1
        assert stored() + gauge("pruned") + gauge("rate_limited") == 162
        status = db.run_sync(rejections.unstored_by_reason)
        assert status == {"malformed": {"pruned": 65, "rate_limited": 95}}
    finally:
        db.close()
