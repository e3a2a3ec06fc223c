"""The anchorer when the node goes away: an RPC outage (the node SIGSTOPped mid-send) loses nothing and
stalls nothing; a restarted node (a new chain under the same chain id 31337) gets every unconfirmed root
anchored again, with fresh nonces where the new chain's count is behind ours."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from anchor_fixtures import Fleet, confirm_all, make_anchorer

from pinseal_anchor import outbox
from pinseal_anchor.client import RpcError
from pinseal_devkit.hardhat import HardhatNode

pytestmark = [pytest.mark.chain, pytest.mark.timeout(120)]


def test_rpc_outage_loses_nothing(own_chain: HardhatNode, tmp_path: Path) -> None:
    anchorer, source = make_anchorer(
        tmp_path, own_chain.url, fund=own_chain.fund, timeout_s=1.0, poll_s=0.05, max_backoff_s=0.4
    )
    fleet = Fleet()
    batches = [fleet.make_batch() for _ in range(3)]
    source.add(batches[0].hash)
    assert anchorer.tick()  # anchor 1 sent
    source.add(*(b.hash for b in batches[1:]))
    own_chain.pause()
    try:
        for _ in range(3):  # sealed locally, but neither sent nor confirmed: the node does not answer
            started = time.monotonic()
            assert not anchorer.tick()
            assert time.monotonic() - started < 10  # bounded by the client timeout, never stuck
        assert anchorer.failures == 3 and anchorer.next_wait() == 0.4
        # the supervised loop keeps going (and stops when told) while the node is down
        stop = threading.Event()
        thread = threading.Thread(target=anchorer.run, args=(stop,), daemon=True)
        thread.start()
        time.sleep(1.5)
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
        status = anchorer.anchor_status()
        assert status.pending + status.sent == 2 and status.confirmed == 0
        assert status.last_error and "127.0.0.1" in status.last_error
    finally:
        own_chain.resume()
    confirm_all(anchorer, own_chain)
    anchors = outbox.in_state(anchorer.db, "confirmed")
    assert sum(a.leaf_count for a in anchors) == 3
    assert sorted(a.nonce for a in anchors) == [0, 1]
    assert anchorer.anchor_status().last_error is None


def test_restarted_node_reanchors_unconfirmed_roots(
    own_chain: HardhatNode, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "pinseal_anchor")
    anchorer, source = make_anchorer(tmp_path, own_chain.url, fund=own_chain.fund, confirmations=3)
    fleet = Fleet()
    first, second = fleet.make_batch(), fleet.make_batch()
    source.add(first.hash)
    confirm_all(anchorer, own_chain)  # nonce 0, confirmed for good
    source.add(second.hash)
    assert anchorer.tick()  # nonce 1, mined but 1 deep of 3
    assert anchorer.tick()
    (sent,) = outbox.in_state(anchorer.db, "sent")
    assert sent.nonce == 1 and sent.block_hash is not None

    own_chain.restart()  # a new chain: no blocks, no balance, the account's nonce back at 0
    own_chain.fund(anchorer.account.address)
    confirm_all(anchorer, own_chain)
    again = outbox.get(anchorer.db, sent.id)
    assert again.state == "confirmed" and again.nonce == 0  # the gap (1 > 0) closed with a fresh nonce
    assert again.block_hash != sent.block_hash and again.tx_hash != sent.tx_hash
    assert "new genesis block" in caplog.text


def test_recorded_but_unbroadcast_transaction_is_broadcast_again(
    own_chain: HardhatNode, tmp_path: Path
) -> None:
    """The connection drops between recording the signed transaction and the node receiving it (as a crash
    there would): the next tick finds the node does not know it and broadcasts the same bytes."""
    anchorer, source = make_anchorer(tmp_path, own_chain.url, fund=own_chain.fund, confirmations=1)
    source.add(Fleet().make_batch().hash)
    real_send = anchorer.client.send_raw

    def dropped(raw: bytes) -> str:
        raise RpcError("connection reset while sending")

    anchorer.client.send_raw = dropped  # type: ignore[method-assign]
    assert not anchorer.tick()
    (sent,) = outbox.in_state(anchorer.db, "sent")
    assert anchorer.client.transaction(sent.tx_hash) is None  # the node never saw it
    anchorer.client.send_raw = real_send  # type: ignore[method-assign]
    confirm_all(anchorer, own_chain)
    done = outbox.get(anchorer.db, sent.id)
    assert done.state == "confirmed" and done.tx_hash == sent.tx_hash
    assert len(outbox.txs_of(anchorer.db, sent.id)) == 1
