"""A SQLite ingest database of schema 1 (before issue 17) is brought to schema 2 in place: its stored
bundles get their first reading's time read from their own signed bytes, and nothing is lost."""

import sqlite3
from pathlib import Path

from ingest_fixtures import Gateway, key, sim_device

from pinseal_ingest import db, store
from pinseal_protocol import batch, bundle

SCHEMA_1 = """
CREATE TABLE gateways (kid BLOB PRIMARY KEY, public_key BLOB NOT NULL, label TEXT, added_at REAL NOT NULL,
    revoked_at REAL);
CREATE TABLE devices (kid BLOB PRIMARY KEY, public_key BLOB NOT NULL, label TEXT, added_at REAL NOT NULL,
    revoked_at REAL);
CREATE TABLE batches (hash BLOB PRIMARY KEY, gateway_kid BLOB NOT NULL REFERENCES gateways(kid),
    batch_no INTEGER NOT NULL, prev_hash BLOB NOT NULL, root BLOB NOT NULL, count INTEGER NOT NULL,
    first_received INTEGER NOT NULL, last_received INTEGER NOT NULL, mode TEXT NOT NULL, header BLOB NOT NULL,
    received_at REAL NOT NULL, version INTEGER NOT NULL DEFAULT 1, UNIQUE (gateway_kid, batch_no));
CREATE TABLE leaves (bundle_hash BLOB PRIMARY KEY, batch_hash BLOB NOT NULL REFERENCES batches(hash),
    leaf_index INTEGER NOT NULL, gateway_time_flag TEXT, UNIQUE (batch_hash, leaf_index));
CREATE TABLE bundles (hash BLOB PRIMARY KEY, kid BLOB NOT NULL, seq BLOB NOT NULL, last_seq BLOB NOT NULL,
    prev BLOB NOT NULL, link BLOB NOT NULL, n_readings INTEGER NOT NULL, raw BLOB NOT NULL,
    ingest_time_flag TEXT);
CREATE INDEX bundles_kid_seq ON bundles (kid, seq);
CREATE TABLE rejections (id INTEGER PRIMARY KEY, received_at REAL NOT NULL, reason TEXT NOT NULL, detail TEXT,
    gateway_kid BLOB, batch_hash BLOB, bundle_index INTEGER, evidence BLOB);
PRAGMA user_version=1;
"""


def test_schema_1_bundles_get_their_time_and_keep_everything(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    gateway, device = Gateway(key(1)), sim_device(2)
    raws = [device.seal(3, time_s=1_750_000_000 + 10 * i) for i in range(3)]
    made = gateway.make(raws)
    header = batch.verify_header(made.header, gateway.private.public_key())
    old = sqlite3.connect(path)
    old.executescript(SCHEMA_1)
    old.execute(
        "INSERT INTO gateways VALUES (?, ?, NULL, 0, NULL)",
        (header.gateway_kid, bytes.fromhex(gateway.public_hex)),
    )
    old.execute(
        "INSERT INTO devices VALUES (?, ?, NULL, 0, 1.0)", (device.kid, device.public)
    )  # revoked since
    old.execute(
        "INSERT INTO batches VALUES (?, ?, 0, ?, ?, 3, 0, 0, 'bundles', ?, 0, 2)",
        (header.batch_hash, header.gateway_kid, header.prev_hash, header.root, made.header),
    )
    for i, raw in enumerate(raws):
        b = bundle.verify_bundle(raw, device.key.public_key())
        old.execute("INSERT INTO leaves VALUES (?, ?, ?, NULL)", (b.bundle_hash, header.batch_hash, i))
        old.execute(
            "INSERT INTO bundles VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (b.bundle_hash, b.kid, db.seq_key(b.seq), db.seq_key(b.last_seq), b.prev, b.link, 3, raw),
        )
    old.commit()
    old.close()

    conn = db.connect(path)
    try:
        assert conn.scalar("PRAGMA user_version") == conn.scalar("SELECT version FROM schema_version") == 2
        times = [row[0] for row in conn.execute("SELECT t FROM bundles ORDER BY seq")]
        assert times == [1_750_000_000, 1_750_000_010, 1_750_000_020]
        for raw in raws:
            info = store.bundle_info(conn, batch.bundle_hash(raw))
            assert info is not None and info["body"] == raw.hex() and info["verified_by"] == "ingest"
        assert [row[1] for row in conn.execute("PRAGMA table_info(bundles)") if row[5]] == ["hash", "t"]
        assert store.high_water(conn, device.kid) == 8  # the indexes came back with the table
    finally:
        conn.close()
