"""The gateway's database holds MQTT password hashes and readings: private folder and files (issue 11 #8b)."""

from __future__ import annotations

import logging
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_gateway.store.db import Database
from pinseal_protocol import keys


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask():
    old = os.umask(0o022)  # what a distribution's default gives a service
    yield
    os.umask(old)


def test_a_new_database_is_private(tmp_path, loose_umask):
    path = tmp_path / "data" / "gateway.sqlite"
    db = Database(path)
    try:
        db.run_sync(lambda conn: conn.execute("CREATE TABLE probe (x)"))
        files = [p for p in path.parent.iterdir() if p.name.startswith("gateway.sqlite")]
        assert {p.name for p in files} >= {"gateway.sqlite", "gateway.sqlite-wal", "gateway.sqlite-shm"}
        assert mode(path.parent) == 0o700
        assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    finally:
        db.close()


def test_an_existing_readable_database_is_tightened_with_a_log_line(tmp_path, loose_umask, caplog):
    path = tmp_path / "gateway.sqlite"
    Database(path).close()
    for p in tmp_path.iterdir():
        p.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        Database(path).close()
    assert mode(path) == 0o600
    assert any("0600" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_the_data_folder_is_private_when_keygen_creates_it(tmp_path, loose_umask, capsys, monkeypatch):
    """The usual order: `keygen` creates the data folder, then the database is created inside it."""
    from pinseal_gateway import cli
    from pinseal_gateway.cli import main

    # The CLI points the root logger at this test's captured stderr, which closes with the test: a later
    # test's thread logging through that handler would print "--- Logging error ---" into the run.
    monkeypatch.setattr(cli.logformat, "configure", lambda level, fmt: None)

    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\ndata_dir = "data"\n')
    assert main(["keygen", "--config", str(config)]) == 0
    device = keys.public_key_bytes(Ed25519PrivateKey.generate()).hex()
    assert main(["devices", "add", device, "--config", str(config)]) == 0  # creates the database
    data = tmp_path / "data"
    assert mode(data) == 0o700
    assert {p.name: mode(p) for p in data.iterdir()} == {p.name: 0o600 for p in data.iterdir()}
