"""The ingest's tests run on both engines: `ingest_target` is a SQLite file or a database on a private
PostgreSQL server that the session starts itself (pinseal_devkit.postgres), never the machine's own."""

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from pinseal_devkit.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database of its own for one test."""
    return postgres_server.create_database(f"t_{uuid4().hex[:16]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def ingest_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where one test's ingest keeps its data, once per engine."""
    if request.param == "sqlite":
        return str(tmp_path / "ingest.sqlite")
    return str(request.getfixturevalue("postgres_url"))
