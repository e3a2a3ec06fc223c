"""A rejection flood through the real broker and gateway leaves the database bounded, and every
rejection is still counted (issue 11 #8a)."""

from __future__ import annotations

import sqlite3
import time

import pytest

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


@pytest.mark.xfail(strict=True, reason="issue 11 #8a: every rejection is stored, without limit")
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
    unstored = metric(gateway, "rejections_unstored_total", reason="malformed", why="rate_limited")
    assert stored - 1 + unstored == FLOOD == metric(gateway, "rejected_total", reason="malformed")
    conn = sqlite3.connect(env.config.db_path)
    try:
        assert conn.execute("SELECT reason FROM rejections WHERE kid = ?", (honest.kid,)).fetchall() == [
            ("bad_signature",)
        ]
    finally:
        conn.close()
