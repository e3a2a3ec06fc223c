"""What is PostgreSQL's own: bundles partitioned by month of their first reading, the (hash, t) key,
schema versions, and the CLI on a `postgresql://` URL (issue 17 #1)."""

import json
from pathlib import Path

import psycopg
import pytest
from ingest_fixtures import Gateway, key, register, sim_device, table_counts
from ingest_processes import IngestProcess, send

from pinseal_ingest import db
from pinseal_ingest.cli import main
from pinseal_ingest.storage import SchemaTooNew
from pinseal_ingest.storage.migrations import first_reading_time
from pinseal_ingest.storage.postgres import month_of, month_start, redact

MONTHS = [(2024, 12), (2025, 1), (2026, 2)]


def partitions(url: str) -> dict[str, str]:
    """Partition name -> its bounds, as PostgreSQL holds them."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE p.relname = 'bundles'"
        ).fetchall()
    return dict(rows)


def rows_per_partition(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tableoid::regclass::text, count(*) FROM bundles GROUP BY 1").fetchall()
    return dict(rows)


def test_bundles_land_in_the_partition_of_their_first_reading(postgres_url: str, tmp_path: Path) -> None:
    """Months are made on demand (by whichever worker meets one first), times a device could not have
    meant fall in the edge partitions, and each bundle sits in the month its signed time names."""
    gateway, device = Gateway(key(1)), sim_device(2)
    register(postgres_url, gateways=[gateway], devices=[device])
    assert set(partitions(postgres_url)) == {"bundles_before_2000", "bundles_from_2100"}
    times = [month_start(*m) + 3600 for m in MONTHS] + [5, month_start(2101, 1)]  # clock unset, far future
    sealed = [device.seal(2, time_s=t) for t in times]
    with IngestProcess(postgres_url, 2, tmp_path) as ingest:
        for raw in sealed:
            response = send(ingest.port, gateway.make([raw]))
            assert response.status == 200, response
    expected = {f"bundles_{y:04d}_{m:02d}" for y, m in MONTHS} | {"bundles_before_2000", "bundles_from_2100"}
    assert set(partitions(postgres_url)) == expected
    assert rows_per_partition(postgres_url) == dict.fromkeys(expected, 1)
    bounds = partitions(postgres_url)["bundles_2025_01"]
    assert str(month_start(2025, 1)) in bounds and str(month_start(2025, 2)) in bounds


def test_the_same_bundle_cannot_be_stored_twice(postgres_url: str) -> None:
    """(hash, t) is the key, and t is read from the signed bytes: the same bundle always has the same t,
    so the database itself refuses a second copy whatever else a buggy writer did."""
    gateway, device = Gateway(key(1)), sim_device(2)
    register(postgres_url, gateways=[gateway], devices=[device])
    conn = db.connect(postgres_url)
    try:
        from pinseal_ingest import store
        from pinseal_protocol import bundle

        verified = bundle.verify_bundle(device.seal(), device.key.public_key())
        month = month_of(first_reading_time(verified))
        assert month is not None
        conn.ensure_partition(month)  # what a worker does before it retries the batch
        store.insert_bundle(conn, verified)
        with pytest.raises(psycopg.errors.UniqueViolation):
            store.insert_bundle(conn, verified)
    finally:
        conn.close()


def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    db.connect(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = version + 1")
    with pytest.raises(SchemaTooNew, match="newer than this ingest"):
        db.connect(postgres_url)


def test_the_cli_on_a_postgresql_url(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    gateway = Gateway(key(1))
    assert main(["gateways", "add", gateway.public_hex, "--db", postgres_url]) == 0
    assert main(["stats", "--db", postgres_url]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["gateways"] == 1
    assert table_counts(postgres_url)["batches"] == 0


def test_an_unreachable_database_is_a_clear_error_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pinseal_gateway.broker import free_port

    url = f"postgresql://ingest:s3cret@127.0.0.1:{free_port()}/network"
    assert main(["stats", "--db", url]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to PostgreSQL at postgresql://ingest:***@127.0.0.1" in err
    assert "s3cret" not in err
    assert redact("postgresql://a@h/db") == "postgresql://a@h/db"


@pytest.mark.parametrize("workers", [1, 2])
def test_the_database_password_never_reaches_the_log(postgres_url: str, tmp_path: Path, workers: int) -> None:
    """`run` logs where its data is; with a PostgreSQL URL that must be without the password (the test
    server trusts loopback, so any password connects)."""
    with_password = postgres_url.replace("pinseal@", "pinseal:s3cret-pw@")
    ingest = IngestProcess(with_password, workers, tmp_path).wait_ready()
    try:
        output = ingest.output()
    finally:
        assert ingest.stop() == 0
    assert "listening on" in output and "pinseal:***@127.0.0.1" in output
    assert "s3cret-pw" not in ingest.output()
