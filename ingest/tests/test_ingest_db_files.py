"""The ingest's database holds every gateway's readings: private folder and files (issue 11 #8b)."""

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinseal_ingest import db


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_database_is_private(tmp_path: Path, loose_umask: None) -> None:
    path = tmp_path / "ingest" / "ingest.sqlite"
    conn = db.connect(path)
    try:
        conn.execute("CREATE TABLE probe (x)")
        files = [p for p in path.parent.iterdir() if p.name.startswith("ingest.sqlite")]
        assert {p.name for p in files} >= {"ingest.sqlite", "ingest.sqlite-wal", "ingest.sqlite-shm"}
        assert mode(path.parent) == 0o700
        assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    finally:
        conn.close()


def test_an_existing_readable_database_is_tightened_with_a_log_line(
    tmp_path: Path, loose_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ingest.sqlite"
    db.connect(path).close()
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        db.connect(path).close()
    assert mode(path) == 0o600
    assert any("0600" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
