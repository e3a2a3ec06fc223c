"""SIGKILL of a real `pinseal-gateway run` process mid-stream, then a restart: nothing acked is lost,
everything published is eventually stored exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

from pinseal_protocol import bundle as pbundle


def start_gateway(config_path, log_path):
    log = open(log_path, "ab")  # noqa: SIM115 - the child process owns it
    return subprocess.Popen(
        [sys.executable, "-m", "pinseal_gateway.cli", "run", "--config", str(config_path)],
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def stored(db_path):
    conn = sqlite3.connect(db_path)
    try:
        hashes = [h for (h,) in conn.execute("SELECT hash FROM bundles")]
        (readings,) = conn.execute("SELECT count(*) FROM readings").fetchone()
        return hashes, readings
    finally:
        conn.close()


def collect_acks(peer, acked, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ack = peer.ack(timeout=max(0.01, deadline - time.monotonic()))
        except Exception:
            break
        acked[ack.bundle_hash] = ack


PACE_PER_S = 500  # the stream lasts 3 s: the kill, after ~200 acks, always lands in the middle of it


def send_paced(peer, raws, stop):
    """Publish `raws` at PACE_PER_S until done or `stop` is set (published all at once, a fast machine
    committed all 1,500 before the kill, and the test then tested nothing)."""
    start = time.monotonic()
    for i, raw in enumerate(raws):
        if stop.is_set():
            return
        peer.send(raw, wait=False)
        ahead = start + (i + 1) / PACE_PER_S - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)


def test_sigkill_mid_stream_loses_nothing_acked(env, tmp_path):
    config_path = env.write_toml(tmp_path / "gateway.toml")
    log_path = tmp_path / "gateway.log"
    device = env.devices[0]
    peer = env.device_peer(device)
    proc = start_gateway(config_path, log_path)
    try:
        warmup = device.seal()
        acked = {}
        deadline = time.monotonic() + 30
        while not acked and time.monotonic() < deadline:  # resent until the gateway is up and subscribed
            peer.send(warmup)
            collect_acks(peer, acked, 1)
        assert acked
        raws = [device.seal() for _ in range(1500)]
        stop = threading.Event()
        sender = threading.Thread(target=send_paced, args=(peer, raws, stop), daemon=True)
        sender.start()
        # kill as soon as the gateway has acked a part of the stream
        deadline = time.monotonic() + 30
        while len(acked) < 200 and time.monotonic() < deadline:
            ack = peer.ack(timeout=30)
            acked[ack.bundle_hash] = ack
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        stop.set()  # what was not published yet is sent below, as a device resends what has no ack
        sender.join(10)
        collect_acks(peer, acked, 0.5)  # acks already on their way when it died
        hashes, _ = stored(env.config.db_path)
        assert set(acked) <= set(hashes), "a bundle was acked but is not in the database"
        assert len(hashes) < len(raws) + 1, "the kill came too late to test anything"

        proc = start_gateway(config_path, log_path)
        everything = {pbundle.bundle_hash(r) for r in [warmup, *raws]}
        collect_acks(peer, acked, 0)
        deadline = time.monotonic() + 40
        while not everything <= set(acked) and time.monotonic() < deadline:
            collect_acks(peer, acked, 3)
            missing = everything - set(acked)
            if missing:  # a device resends what it has no ack for (the broker redelivered the rest)
                for raw in raws:
                    if pbundle.bundle_hash(raw) in missing:
                        peer.send(raw, wait=False)
        assert everything <= set(acked)
    finally:
        peer.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log_path.read_text()[-3000:]
    hashes, readings = stored(env.config.db_path)
    assert sorted(hashes) == sorted(everything)
    assert readings == 2 * len(everything)  # readings are not keyed: duplicates would show here
    last = max(acked.values(), key=lambda a: a.seq)
    assert last.seq == len(raws)
