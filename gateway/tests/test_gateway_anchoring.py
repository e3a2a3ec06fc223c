"""A gateway configured to anchor its own batches ([anchor]) does so on a real local chain (Hardhat):
every batch it seals ends in a confirmed anchor of its own key, in its own SQLite file; and a broken
[anchor] section stops the gateway at start with a clear message (issue 17 #4, "optionally a gateway")."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_process import running, wait_for

from pinseal_anchor.keyfile import address_of
from pinseal_devkit.hardhat import HardhatNode, running_node
from pinseal_gateway import broker
from pinseal_gateway.cli import main

pytestmark = pytest.mark.chain


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[HardhatNode]:
    with running_node(tmp_path / "hardhat.log") as node:
        yield node


def anchored(db_path: Path) -> tuple[int, int]:
    """(batches sealed, batches in a confirmed anchor) in the gateway's own database."""
    conn = sqlite3.connect(db_path)
    try:
        batches = conn.execute("SELECT count(*) FROM batches").fetchone()[0]
        try:
            done = conn.execute(
                "SELECT count(*) FROM anchor_leaves l JOIN anchor_anchors a ON a.id = l.anchor_id"
                " WHERE a.state = 'confirmed'"
            ).fetchone()[0]
        except sqlite3.OperationalError:  # the anchorer has not made its tables yet
            done = 0
        return batches, done
    finally:
        conn.close()


def test_a_gateway_anchors_its_own_batches(make_gateway_env, chain: HardhatNode, tmp_path: Path) -> None:
    anchor = {"enabled": True, "rpc": chain.url, "chain": "hardhat", "interval_s": 1.0, "confirmations": 2}
    env = make_gateway_env(tmp_path, n_devices=1, anchor=anchor, batch={"interval_s": 1.0})
    config_path = env.write_toml(tmp_path / "gateway.toml")
    assert main(["anchor-keygen", "--config", str(config_path)]) == 0
    key_path = env.config.data_dir / "anchor.key"
    assert (key_path.stat().st_mode & 0o077) == 0
    assert main(["anchor-keygen", "--config", str(config_path)]) == 1  # never overwritten
    chain.fund(address_of(key_path))
    broker_proc = broker.start_mosquitto(env.broker_dir, env.port)
    log_path = tmp_path / "gateway.log"
    try:
        with running(config_path, log_path):
            wait_for(log_path, "anchoring this gateway's batches as", timeout=30)
            peer = env.device_peer(env.devices[0])
            for _ in range(3):
                peer.send(env.devices[0].seal())
                time.sleep(1.2)  # a batch a second: several batches, then several anchors
            deadline = time.monotonic() + 120
            while True:
                batches, done = anchored(env.config.db_path)
                if batches >= 2 and done == batches:
                    break
                assert time.monotonic() < deadline, (batches, done, log_path.read_text()[-2000:])
                chain.mine(1)
                time.sleep(0.3)
    finally:
        broker.stop_mosquitto(broker_proc)


def test_a_broken_anchor_section_stops_the_gateway_at_start(make_gateway_env, tmp_path: Path) -> None:
    anchor = {"enabled": True, "rpc": "http://127.0.0.1:1", "chain": "no-such-chain"}
    env = make_gateway_env(tmp_path, n_devices=0, anchor=anchor)
    config_path = env.write_toml(tmp_path / "gateway.toml")
    log_path = tmp_path / "gateway.log"
    with running(config_path, log_path) as proc:
        assert proc.wait(30) != 0
    assert "unknown chain 'no-such-chain'" in log_path.read_text()
