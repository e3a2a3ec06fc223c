"""Network scale (make test-long): 1,000,000 devices and 10,000 gateways imported into PostgreSQL by the
real CLI, streamed in flat memory, and the registry lookups still index scans afterwards."""

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from explain_plans import QUERIES, Sample, explain, problems
from nacl.bindings import crypto_sign_seed_keypair

from pinseal_ingest import db
from pinseal_protocol import keys

DEVICES = 1_000_000
GATEWAYS = 10_000
MAX_RSS_MB = 200  # a Python process with psycopg loaded is ~60 MB; the file is ~250 MB


def write_devices(path: Path, n: int) -> None:
    """The provisioning export layout (an indented JSON array), written as it is generated."""
    with path.open("w") as fp:
        fp.write("[\n")
        for i in range(n):
            pk = crypto_sign_seed_keypair(i.to_bytes(32, "big"))[0]
            record = {"kid": keys.key_id(pk).hex(), "public_key": pk.hex(), "label": f"node {i}"}
            fp.write(("" if i == 0 else ",\n") + json.dumps(record, indent=2))
        fp.write("\n]\n")


def write_gateways(path: Path, n: int) -> None:
    with path.open("w") as fp:
        for i in range(n):
            pk = crypto_sign_seed_keypair((10**9 + i).to_bytes(32, "big"))[0]
            fp.write(json.dumps({"public_key": pk.hex(), "label": f"gateway {i}"}) + "\n")


def cli_import(table: str, path: Path, url: str) -> tuple[str, float, float]:
    """Run `pinseal-ingest <table> import`; its output, seconds and peak RSS in MB (from wait4)."""
    argv = [sys.executable, "-m", "pinseal_ingest.cli", table, "import", str(path), "--db", url]
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(timeout=1800)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    elapsed = time.perf_counter() - started
    assert process.returncode == 0, err.decode()[-2000:]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the largest child so far: this one
    return out.decode(), elapsed, usage.ru_maxrss / 1024


@pytest.mark.long
@pytest.mark.timeout(3600)
def test_a_million_devices(tmp_path: Path, postgres_url: str) -> None:
    devices_file, gateways_file = tmp_path / "devices.json", tmp_path / "gateways.jsonl"
    write_devices(devices_file, DEVICES)
    write_gateways(gateways_file, GATEWAYS)
    size_mb = devices_file.stat().st_size / 1e6

    out, elapsed, rss = cli_import("gateways", gateways_file, postgres_url)
    assert out == f"{GATEWAYS} gateways added, 0 already registered\n"
    print(f"\n{GATEWAYS} gateways: {elapsed:.1f} s ({GATEWAYS / elapsed:,.0f} rows/s)")
    out, elapsed, rss = cli_import("devices", devices_file, postgres_url)
    assert out == f"{DEVICES} devices added, 0 already registered\n"
    rate = DEVICES / elapsed
    print(f"{DEVICES} devices ({size_mb:.0f} MB file): {elapsed:.1f} s ({rate:,.0f} rows/s)", end="")
    print(f", peak RSS {rss:.0f} MB")
    assert rss < MAX_RSS_MB

    conn = db.connect(postgres_url)
    try:
        conn.execute("ANALYZE devices")
        conn.execute("ANALYZE gateways")
        pk = crypto_sign_seed_keypair((DEVICES - 1).to_bytes(32, "big"))[0]
        gw = crypto_sign_seed_keypair((10**9 + 7).to_bytes(32, "big"))[0]
        sample = Sample(keys.key_id(pk), b"", b"", b"", b"", b"", keys.key_id(gw))
        for query in QUERIES[:2]:  # the registry lookups by kid
            for generic in (False, True):
                plan = explain(conn, query, sample, generic=generic)
                assert problems(plan, query, 0) == [], plan
        started = time.perf_counter()
        for i in range(0, DEVICES, DEVICES // 1000):
            kid = keys.key_id(crypto_sign_seed_keypair(i.to_bytes(32, "big"))[0])
            assert conn.execute(QUERIES[0].sql, (kid,)).fetchone() is not None
        print(f"device lookup by kid: {(time.perf_counter() - started) / 1000 * 1e6:.0f} us (1,000 lookups)")
        assert conn.scalar("SELECT count(*) FROM devices") == DEVICES
    finally:
        conn.close()
    os.remove(devices_file)
