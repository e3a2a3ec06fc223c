"""`make bench-backlog`: how fast a backlog of 1,000,000 readings drains to the network after an outage.

The scenario an owner meets after their internet was down for a day: the gateway kept accepting and storing
bundles, its uplink could not deliver. Here the backlog (16-reading bundles, pre-signed by 100 devices) is
written into the gateway's store as accepted bundles, the gateway runs with the network ingest down until it
has sealed every bundle into batches, then the ingest comes up and the drain is timed until the ingest has
verified and stored every bundle (its count, not the gateway's).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pinseal_bench.gateway import register
from pinseal_bench.report import publish, stamp
from pinseal_devkit.simdevice import SimDevice
from pinseal_devkit.stack import Stack, wait_until
from pinseal_gateway.store.bundles import INSERT_BUNDLE
from pinseal_protocol import bundle as pbundle

REPO = Path(__file__).resolve().parents[2]
SECTION = "backlog"
COMMAND = "make bench-backlog"


def store_backlog(db_path: Path, devices: list[SimDevice]) -> int:
    """Write every device's bundles as accepted (what the gateway stored while its uplink was down)."""
    rows = []
    now = time.time()
    for device in devices:
        for data in device.bundles:
            b = pbundle.verify_bundle(data, device.key.public_key())
            rows.append(
                (
                    b.bundle_hash,
                    b.kid,
                    b.boot,
                    b.seq,
                    b.last_seq,
                    b.prev,
                    b.n_readings,
                    b.time_source,
                    now,
                    data,
                    0,
                    None,
                )
            )
    with sqlite3.connect(db_path) as conn:
        conn.executemany(INSERT_BUNDLE, rows)
    return sum(r[6] for r in rows)


def count(db_path: Path, sql: str) -> int:
    with sqlite3.connect(db_path, timeout=30) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    stack = Stack(Path(tempfile.mkdtemp(prefix="pinseal-backlog-")), batch_interval_s=0.5)
    stack.prepare()
    devices = SimDevice.fleet(args.devices)
    per_device = -(-args.readings // (16 * args.devices))
    print(
        f"backlog: signing {per_device * args.devices} bundles of 16 readings ({args.devices} devices)",
        flush=True,
    )
    start = time.perf_counter()
    for d in devices:
        d.bundles = d.presign(per_device, per_bundle=16)
    sign_s = time.perf_counter() - start
    register(stack, devices)
    gateway_db = stack.workdir / "gateway" / "gateway.sqlite"
    readings = store_backlog(gateway_db, devices)
    bundles = per_device * args.devices
    stack.start_broker_only()
    stack.start_gateway()  # ingest still down: the outage
    print("backlog: gateway sealing batches while the network is unreachable", flush=True)
    wait_until(
        lambda: count(gateway_db, "SELECT count(*) FROM bundles WHERE batch_id IS NULL") == 0, 600, 0.5
    )
    batches = count(gateway_db, "SELECT count(*) FROM batches")
    print(
        f"backlog: {readings} readings in {bundles} bundles, {batches} batches waiting; network back up",
        flush=True,
    )
    try:
        start = time.perf_counter()
        stack.start_ingest()
        wait_until(lambda: count(stack.ingest_db, "SELECT count(*) FROM batches") >= 1, 600, 0.05)
        first_s = time.perf_counter() - start  # the uplink's backoff: it retries on its own schedule
        drained = wait_until(
            lambda: count(stack.ingest_db, "SELECT count(*) FROM bundles") >= bundles, 1800, 0.05
        )
        drain_s = time.perf_counter() - start - first_s
        stored = count(stack.ingest_db, "SELECT count(*) FROM bundles")
        distinct = count(stack.ingest_db, "SELECT count(DISTINCT hash) FROM bundles")
        stored_batches = count(stack.ingest_db, "SELECT count(*) FROM batches")
    finally:
        stack.stop()
    return {
        "backlog_readings": readings,
        "backlog_bundles": bundles,
        "batches": batches,
        "drained": drained,
        "first_batch_after_s": round(first_s, 2),
        "drain_s": round(drain_s, 2),
        "readings_per_s": round(readings / drain_s, 1),
        "bundles_per_s": round(bundles / drain_s, 1),
        "batches_at_ingest": stored_batches,
        "lost": bundles - distinct,
        "duplicated": stored - distinct,
        "presign_s": round(sign_s, 1),
    }


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    return "\n".join(
        [
            f"<!-- bench:{SECTION}:start -->",
            "## Gateway: draining a backlog after an uplink outage",
            "",
            f"Command: `{COMMAND}` ({r['measured_at']}). Machine: {m['cpu']}, {m['cores']} cores, {m['os']}, "
            f"Python {m['python']}.",
            "",
            f"{r['backlog_readings']:,} readings in {r['backlog_bundles']:,} sixteen-reading bundles, "
            f"sealed into {r['batches']} batches while the network ingest was down. Once it came up, the "
            f"uplink's next retry reached it after {r['first_batch_after_s']} s (jittered exponential "
            f"backoff), and from the first batch to the last the drain took **{r['drain_s']} s**: "
            f"**{r['readings_per_s']:,} readings/s** ({r['bundles_per_s']:,} bundles/s, every device "
            f"signature verified again at the ingest). Lost {r['lost']}, duplicated {r['duplicated']} "
            "(the ingest's store).",
            f"<!-- bench:{SECTION}:end -->",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "backlog.json")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    result = stamp(asyncio.run(run(args)))
    publish(result, args.out, args.doc, SECTION, render(result))
    return 0 if result["drained"] and result["lost"] == 0 and result["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
