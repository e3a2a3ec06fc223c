"""Every hot-path query reads by index on a filled PostgreSQL database, on every partition of bundles,
as a custom and as a generic plan: the proof that lookups stay O(log n) as the network grows
(docs/network-queries.md shows the plans)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from explain_plans import QUERIES, Query, Sample, bundles_partitions, explain, fill, problems

from pinseal_devkit.postgres import PostgresServer
from pinseal_ingest import db
from pinseal_ingest.storage.postgres import PostgresDatabase

ROWS = 100_000


@pytest.fixture(scope="module", params=["short chains", "long chains"])
def filled(
    request: pytest.FixtureRequest, postgres_server: PostgresServer
) -> Iterator[tuple[PostgresDatabase, Sample]]:
    """100,000 bundles of 20,000 devices (5 bundles each), or 50,000 of 100 devices (500 each)."""
    rows, devices = (ROWS, None) if request.param == "short chains" else (ROWS // 2, 100)
    conn = db.connect(postgres_server.create_database(f"plans_{request.param.replace(' ', '_')}"))
    assert isinstance(conn, PostgresDatabase)
    try:
        yield conn, fill(conn, rows, devices)
    finally:
        conn.close()


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.name)
@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
def test_query_uses_its_index(filled: tuple[PostgresDatabase, Sample], query: Query, generic: bool) -> None:
    conn, sample = filled
    plan = explain(conn, query, sample, generic=generic)
    assert problems(plan, query, bundles_partitions(conn)) == [], plan


def test_the_sample_is_real(filled: tuple[PostgresDatabase, Sample]) -> None:
    """The plans are of lookups that find rows (a miss can be planned differently)."""
    conn, sample = filled
    assert conn.scalar("SELECT count(*) FROM bundles") in (ROWS, ROWS // 2)
    assert bundles_partitions(conn) == 8
    for query in QUERIES:
        if query.name.startswith(("device key", "chain head", "committed leaf", "proof", "readings")):
            assert conn.execute(query.sql, query.params(sample)).fetchone() is not None, query.name


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.name)
def test_sqlite_searches_by_index(tmp_path: Path, query: Query) -> None:
    """SQLite runs the same SQL: every table is reached by SEARCH (an index or key lookup), never SCAN."""
    conn = db.connect(tmp_path / "plans.sqlite")
    try:
        sample = Sample(b"k" * 16, b"h" * 32, b"\0" * 8, b"p" * 16, b"l" * 16, b"b" * 32, b"g" * 16)
        plan = [row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + query.sql, query.params(sample))]
    finally:
        conn.close()
    steps = [step for step in plan if step.startswith(("SCAN", "SEARCH"))]
    assert steps and all(step.startswith("SEARCH") for step in steps), plan
