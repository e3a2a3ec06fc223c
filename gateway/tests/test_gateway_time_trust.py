"""Times a network cannot trust travel flagged from the device to the network ingest (issue 11 #6).

A registered device signs readings at epoch 0, ten years ahead and at 2^63 - 1 (the largest time both
stores keep as a signed 64-bit integer). The real Mosquitto, the running gateway and a real ingest on a
loopback port carry them: the gateway accepts, acks and flags them, signs the flags into its batch
(version 2), and the ingest, which checks the reading times again itself, stores and answers both the
gateway's flag and its own.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import host_bundles
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_gateway import batcher
from pinseal_gateway.config import UplinkSection
from pinseal_gateway.store import batches
from pinseal_gateway.store import bundles as bundle_store
from pinseal_gateway.store.db import Database
from pinseal_ingest import db as ingest_db
from pinseal_ingest import registry
from pinseal_ingest.server import serve
from pinseal_protocol import batch, bundle, cose, dcbor, keys

TEN_YEARS_S = 10 * 365 * 86400
MAX_TIME = 2**63 - 1


class LoopbackIngest:
    """`pinseal_ingest.server.serve` in a thread on a free loopback port (the real HTTP API)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def go() -> None:
            self._stop = asyncio.Event()
            await serve(self.db_path, "127.0.0.1", 0, stop=self._stop, on_ready=self._on_ready)

        try:
            self._loop.run_until_complete(go())
        finally:
            self._ready.set()
            self._loop.close()

    def _on_ready(self, addresses: list[str]) -> None:
        self.port = int(addresses[0].rpartition(":")[2])
        self._ready.set()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10) and self.port, "ingest did not start"

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def get(self, path: str) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[LoopbackIngest]:
    server = LoopbackIngest(tmp_path / "ingest.sqlite")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def env(env: Any, ingest: LoopbackIngest) -> Any:
    """The conftest gateway, uplinking to the loopback ingest every 0.2 s, registered there."""
    conn = ingest_db.connect(ingest.db_path)
    try:
        registry.add(conn, "gateways", env.gateway_public)
        for device in env.devices:
            registry.add(conn, "devices", device.public)
    finally:
        conn.close()
    url = f"http://127.0.0.1:{ingest.port}/v1/batches"
    env.config = replace(
        env.config,
        uplink=replace(UplinkSection(), kind="http", url=url, backoff_initial_s=0.1, backoff_max_s=0.5),
        batch=replace(env.config.batch, interval_s=0.2),
        pipeline=replace(env.config.pipeline, verify_process=False),
    )
    return env


def wait_until(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def header_payload(raw_header: bytes) -> dict[int, Any]:
    return dcbor.decode(cose.decode_sign1(raw_header).payload)


def test_implausible_times_reach_the_ingest_flagged_in_the_signed_batch(
    env: Any, ingest: LoopbackIngest, gateway: Any
) -> None:
    device = env.devices[0]
    now = int(time.time())
    times = {"plausible": now, "epoch_0": 0, "far_future": now + TEN_YEARS_S, "max_time": MAX_TIME}
    raws = {name: device.seal(time_s=t) for name, t in times.items()}
    hashes = {name: batch.bundle_hash(raw) for name, raw in raws.items()}

    try:
        peer = env.device_peer(device)
        try:
            for raw in raws.values():
                peer.send(raw)
            acks = peer.acks_for(set(hashes.values()))
        finally:
            peer.close()
        assert set(acks) == set(hashes.values())  # accepted and acked: kept, only flagged

        def at_ingest() -> bool:
            return all(ingest.get(f"/v1/bundles/{h.hex()}")[0] == 200 for h in hashes.values())

        assert wait_until(at_ingest, 20), "the batch did not reach the ingest"
    finally:
        gateway.stop()

    gateway_db = env.db()
    try:
        place = {name: gateway_db.run_sync(batches.bundle_place, h) for name, h in hashes.items()}
        sealed = {row.batch_no: row for row in gateway_db.run_sync(batches.all_batches)}
    finally:
        gateway_db.close()
    expected = {"plausible": None, "epoch_0": "stale", "far_future": "future", "max_time": "future"}

    # The gateway signed its flags: version 2 headers, each committing to its flagged leaves' flags.
    gateway_key = keys.load_public_key(env.gateway_public)
    for row in sealed.values():
        assert header_payload(row.header)[batch.K_VERSION] == 2
        assert batch.verify_header(row.header, gateway_key).version == 2

    for name, flag in expected.items():
        status, info = ingest.get(f"/v1/bundles/{hashes[name].hex()}")
        assert status == 200
        assert info["leaf_index"] == place[name].leaf_index
        assert info["verified_by"] == "ingest"
        assert info["time_flag"] == {"gateway": flag, "ingest": flag}, name

    for batch_no, row in sealed.items():
        status, info = ingest.get(f"/v1/batches/{row.hash.hex()}")
        assert status == 200 and info["version"] == 2
        flags = {leaf["leaf_index"]: leaf["time_flag"] for leaf in info["leaves"]}
        flagged = {i: flag for i, flag in flags.items() if flag != {"gateway": None, "ingest": None}}
        assert flagged == {
            place[name].leaf_index: {"gateway": flag, "ingest": flag}
            for name, flag in expected.items()
            if flag is not None and place[name].batch_no == batch_no
        }


# ---- the batcher's encoding, without a broker -------------------------------------------------------


def test_seal_batch_signs_each_stored_time_flag_into_a_version_2_batch(tmp_path: Path) -> None:
    gateway_key = Ed25519PrivateKey.from_private_bytes(bytes([9]) * 32)
    gateway_kid = keys.key_id(gateway_key.public_key())
    device_key = Ed25519PrivateKey.from_private_bytes(bytes([10]) * 32)
    raws = host_bundles.make_bundles(device_key, 4)
    stored_flags = [None, "stale", None, "future"]

    def store(conn: Any) -> None:
        with conn:
            for raw, flag in zip(raws, stored_flags, strict=True):
                b = bundle.verify_bundle(raw, device_key.public_key())
                row = (b.bundle_hash, b.kid, b.boot, b.seq, b.last_seq, b.prev, b.n_readings, b.time_source)
                conn.execute(bundle_store.INSERT_BUNDLE, (*row, host_bundles.T0, raw, 0, flag))

    db = Database(tmp_path / "gateway.sqlite")
    try:
        db.run_sync(store)
        pending = db.run_sync(batches.unbatched, 10)
        assert [p.time_flag for p in pending] == stored_flags
        for mode in batch.MODES:
            # two leaves per batch: leaves 0-1, then 2-3
            info = db.run_sync(batcher.seal_batch, gateway_key, gateway_kid, mode, 2, host_bundles.T0 + 10)
            body = db.run_sync(
                lambda c, n=info.batch_no: c.execute(
                    "SELECT body FROM uplink_outbox WHERE batch_no = ?", (n,)
                ).fetchone()[0]
            )
            header = batch.verify_header(info.header, gateway_key.public_key())
            uplink = batch.decode_uplink(body)
            assert header.version == 2 and uplink.mode == mode
            assert batch.check_time_flags(header, uplink) == (
                {1: "stale"} if info.batch_no == 0 else {1: "future"}
            )
    finally:
        db.close()
