"""`make bench-network` in miniature, so the benchmark cannot rot: a tiny backlog drained into SQLite and
PostgreSQL (1 worker) through the real ingest and load generator, a tiny COPY-filled lookup table, and
the rows that fill writes checked to be what they claim (signed bundles, proofs that verify)."""

import json
from pathlib import Path

import pytest

from pinseal_bench import network
from pinseal_bench.network_fill import Filler, FillSpec, TemplateSealer
from pinseal_bench.network_load import seeded_key
from pinseal_devkit.postgres import PostgresServer
from pinseal_ingest import db as ingest_db
from pinseal_ingest import queries
from pinseal_protocol import batch, keys
from pinseal_protocol import bundle as pbundle


def test_template_sealer_is_the_protocols_sealing() -> None:
    sealer = TemplateSealer(seeded_key("test", 1))
    for seq, t in ((1 << 24, 1_767_225_600), ((1 << 32) - 1, (1 << 32) - 1)):
        sealer.check(seq, bytes(range(16)), t)
    with pytest.raises(ValueError):
        sealer.seal(5, bytes(16), 1_767_225_600)  # a 1-byte seq would change the layout


@pytest.mark.timeout(120)
def test_filled_rows_are_signed_and_prove() -> None:
    spec = FillSpec(devices=6, gateways=2, leaves_per_batch=50, final_bundles=300, months=2)
    with PostgresServer() as server:
        url = server.create_database("fill")
        filler = Filler(url, spec, processes=2)
        filler.grow_to(100)
        filler.grow_to(300)  # chains continue across steps
        conn = ingest_db.connect(url)
        try:
            assert conn.scalar("SELECT COUNT(*) FROM bundles") == 300
            assert conn.scalar("SELECT COUNT(DISTINCT gateway_kid) FROM batches") == 2
            assert conn.scalar("SELECT MAX(batch_no) FROM batches") == 2
            for bundle_hash in filler.sample[:5]:
                proof = queries.bundle_proof(conn, bundle_hash)
                assert proof is not None
                device = pbundle.verify_bundle(bytes.fromhex(proof["bundle"]), _resolver(conn, "devices"))
                assert device.bundle_hash == bundle_hash
                header = batch.verify_header(
                    bytes.fromhex(proof["batch"]["header"]), _resolver(conn, "gateways")
                )
                gateway_key = _resolver(conn, "gateways")(header.gateway_kid)
                batch.verify_proof_document(proof["batch"], gateway_key, bytes.fromhex(proof["bundle"]))
        finally:
            conn.close()


def _resolver(conn: ingest_db.Database, table: str):
    def resolve(kid: bytes):
        public = conn.scalar(f"SELECT public_key FROM {table} WHERE kid = ?", (kid,))
        return keys.load_public_key(public)

    return resolve


@pytest.mark.timeout(180)
def test_bench_network_smoke(tmp_path: Path) -> None:
    out, doc = tmp_path / "network.json", tmp_path / "benchmarks.md"
    rc = network.main(
        [
            "--readings", "2048", "--gateways", "2", "--devices-per-gateway", "2", "--batch-bundles", "32",
            "--runs", "sqlite,pg1", "--rounds", "1", "--lookup-sizes", "1000", "--lookups", "50",
            "--fill-devices", "20", "--fill-gateways", "2", "--leaves-per-batch", "100", "--months", "2",
            "--no-anchor",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--doc", str(doc),
        ]
    )  # fmt: skip
    assert rc == 0
    result = json.loads(out.read_text())
    for run in ("sqlite", "pg1"):
        assert result["drain"]["runs"][run]["readings"] == 2048
        assert result["drain"]["runs"][run]["lost_readings"] == 0
        assert result[f"readings_per_s_{run}"] > 0
    assert result["cpu_ms_per_reading_1"] > 0
    assert result["proof_lookup_p99_ms_1e3"] > 0
    assert "<!-- bench:network:start -->" in doc.read_text()
