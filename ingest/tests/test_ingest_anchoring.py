"""The ingest anchoring its batches on a real local chain (Hardhat), end to end (issue 17 #4): two ingest
hosts on one PostgreSQL, both configured to anchor, one anchoring at a time and the other taking over;
the proof document of a reading checked from device signature to block by `pinseal-ingest verify-proof`
with trust anchors from its arguments only."""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_fixtures import Gateway, key, register, request, sim_device
from ingest_processes import IngestProcess, send

from pinseal_anchor import outbox
from pinseal_devkit.hardhat import HardhatNode, running_node
from pinseal_ingest import db
from pinseal_protocol import batch

pytestmark = pytest.mark.chain
LEADER_LINE = "this ingest process anchors for the network"


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[HardhatNode]:
    with running_node(tmp_path / "hardhat.log") as node:
        yield node


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pinseal_ingest.cli", *args], capture_output=True, text=True, timeout=120
    )


def wait_anchored(url: str, chain: HardhatNode, batches: int, timeout_s: float = 180.0) -> None:
    """Mine while waiting until every stored batch is in a confirmed anchor."""
    deadline = time.monotonic() + timeout_s
    conn = db.connect(url)
    try:
        while True:
            made = conn.scalar("SELECT to_regclass('anchor_anchors') IS NOT NULL")
            if made and outbox.status(conn).leaves_anchored >= batches:
                return
            assert time.monotonic() < deadline, outbox.status(conn)
            chain.mine(1)
            time.sleep(0.3)
    finally:
        conn.close()


def test_two_hosts_anchor_once_and_a_reading_verifies_to_its_block(
    postgres_url: str, chain: HardhatNode, tmp_path: Path
) -> None:
    key_file = tmp_path / "anchor" / "anchor.key"
    made_key = cli("anchor", "keygen", "--key", str(key_file))
    assert made_key.returncode == 0, made_key.stderr
    address = cli("anchor", "address", "--key", str(key_file)).stdout.strip()
    assert address.startswith("0x") and (key_file.stat().st_mode & 0o077) == 0
    chain.fund(address)
    gateway, device = Gateway(key(1)), sim_device(2)
    register(postgres_url, gateways=[gateway], devices=[device])
    anchoring = ("--anchor-rpc", chain.url, "--anchor-key", str(key_file), "--anchor-chain", "31337")
    anchoring += ("--anchor-interval", "1", "--anchor-confirmations", "2")
    host_a = IngestProcess(postgres_url, 2, tmp_path, anchoring).wait_ready()
    host_b = IngestProcess(postgres_url, 1, tmp_path, anchoring).wait_ready()
    try:
        sealed = [device.seal(3) for _ in range(6)]
        for i, raw in enumerate(sealed[:3]):
            assert send((host_a, host_b)[i % 2].port, gateway.make([raw])).status == 200
        wait_anchored(postgres_url, chain, 3)
        leaders = [h for h in (host_a, host_b) if LEADER_LINE in h.output()]
        assert len(leaders) == 1, "exactly one host anchors"
        leader, other = leaders[0], (host_b if leaders[0] is host_a else host_a)
        assert leader.stop() == 0  # the anchoring host goes away: the other takes over
        for raw in sealed[3:]:
            assert send(other.port, gateway.make([raw])).status == 200
        wait_anchored(postgres_url, chain, 6)
        assert LEADER_LINE in other.output()
        chain.mine(3)
        documents = []
        for raw in (sealed[0], sealed[-1]):  # anchored by the first host, and by the one that took over
            got = request(other.port, "GET", f"/v1/bundles/{batch.bundle_hash(raw).hex()}/proof")
            assert got.status == 200 and got.body["anchor"] is not None, got
            documents.append(got.body)
    finally:
        for host in (host_a, host_b):
            host.stop()

    status = json.loads(cli("anchor", "status", "--db", postgres_url).stdout)
    assert status["leaves_anchored"] == 6 and status["pending"] == status["sent"] == 0, status
    for n, document in enumerate(documents):
        path = tmp_path / f"proof-{n}.json"
        path.write_text(json.dumps(document))
        trusted = ("--rpc", chain.url, "--anchor-address", address, "--device-key", device.public_key_hex)
        checked = cli("verify-proof", str(path), *trusted, "--gateway-key", gateway.public_hex, "--json")
        assert checked.returncode == 0, checked.stderr
        assert json.loads(checked.stdout)["block_number"] > 0
        forged = cli("verify-proof", str(path), "--rpc", chain.url, "--anchor-address", "0x" + "11" * 20,
                     "--device-key", device.public_key_hex)  # fmt: skip
        assert forged.returncode == 1 and "0x" in forged.stderr
        other_device = cli("verify-proof", str(path), "--rpc", chain.url, "--anchor-address", address,
                           "--device-key", sim_device(3).public_key_hex)  # fmt: skip
        assert other_device.returncode == 1
