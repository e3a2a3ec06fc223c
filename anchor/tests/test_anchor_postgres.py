"""The outbox on the ingest's PostgreSQL (its own adapter, pinseal_ingest.storage.postgres, on a private
server the test starts): the same DDL-per-dialect and portable DML as on SQLite, end to end on a real node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from anchor_fixtures import Fleet, make_anchorer

from pinseal_anchor import outbox
from pinseal_anchor.proof import anchor_proof, anchored_proof
from pinseal_anchor.verify import verify_anchored_proof
from pinseal_devkit.hardhat import HardhatNode
from pinseal_devkit.postgres import PostgresServer
from pinseal_ingest.storage.postgres import PostgresDatabase

pytestmark = [pytest.mark.chain, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg(pg_server: PostgresServer) -> Iterator[PostgresDatabase]:
    db = PostgresDatabase(pg_server.create_database(f"a_{uuid4().hex[:16]}"))
    try:
        yield db
    finally:
        db.conn.close()


def test_outbox_on_postgresql(pg: PostgresDatabase) -> None:
    outbox.init_schema(pg)
    outbox.init_schema(pg)
    leaves = [bytes([i]) * 32 for i in range(5)]
    first = outbox.seal(pg, leaves[:3], now=100.0)
    assert first is not None and first.leaf_count == 3
    assert outbox.seal(pg, leaves, now=101.0).leaf_count == 2  # type: ignore[union-attr]
    assert outbox.anchored_already(pg, leaves) == set(leaves)
    assert outbox.leaf_anchor(pg, leaves[4]) == (first.id + 1, 1)
    status = outbox.status(pg, now=110.0)
    assert (status.pending, status.oldest_unconfirmed_age_s, status.leaves_anchored) == (2, 10.0, 0)
    pg.execute("CREATE TABLE batches (hash BYTEA PRIMARY KEY, received_at DOUBLE PRECISION NOT NULL)")
    more = [bytes([9, i]) * 16 for i in range(3)]
    for i, leaf in enumerate([*leaves, *more]):
        pg.execute("INSERT INTO batches VALUES (?, ?)", (leaf, float(i)))
    assert outbox.unanchored_from(pg, "batches", "hash", ["received_at"])(10) == more
    pg.execute("UPDATE anchor_meta SET value = '2' WHERE key = 'schema_version'")
    with pytest.raises(outbox.SchemaError):
        outbox.init_schema(pg)


def test_anchor_end_to_end_on_postgresql(chain: HardhatNode, pg: PostgresDatabase, tmp_path: Path) -> None:
    anchorer, source = make_anchorer(tmp_path, chain.url, fund=chain.fund, db=pg)
    fleet = Fleet()
    batches = [fleet.make_batch() for _ in range(3)]
    source.add(*(b.hash for b in batches))
    for _ in range(10):
        assert anchorer.tick(), anchorer.last_error
        if anchorer.anchor_status().confirmed:
            break
        chain.mine(1)
    (anchor,) = outbox.in_state(pg, "confirmed")
    part = anchor_proof(pg, batches[2].hash)
    assert part is not None and part["tx_hash"] == anchor.tx_hash.hex()  # type: ignore[union-attr]
    doc = anchored_proof(batches[2].proof(1), batches[2].bundles[1], part)
    verify_anchored_proof(
        doc,
        rpc_url=chain.url,
        anchor_address=anchorer.account.address,
        device_key=fleet.devices[1].key.public_key(),
        gateway_key=fleet.gateway.public_key(),
    )
