"""`make bench-network`: the network ingest at scale, on SQLite and on PostgreSQL with 1, 2 and N workers.

- Backlog drain: 1,000,000 readings (16-reading bundles) from 100 gateways (10 devices each), every
  gateway's chain of signed batches built and cached before timing (network_load), POSTed by a separate
  load-generator process, each gateway's batches in order, into a fresh database per run: SQLite (one
  process, the default engine) and PostgreSQL (fsync and synchronous_commit on) with 1, 2 and N =
  os.cpu_count() workers (`pinseal-ingest run --workers N`). readings/s from the first POST until the
  database holds every batch; CPU-ms per reading summed over the ingest's processes and PostgreSQL's,
  from /proc (network_cpu), the load generator's apart; database bytes per reading.
- Proof lookup: the ingest's schema on PostgreSQL filled by COPY with really signed rows (network_fill),
  10^6 bundles then on to 10^7 in the same database; p50/p99 of random lookups of a bundle's proof
  document through the Database interface.
- Anchoring cost: gas and transactions per day at the anchorer's default interval (network_anchor).

Gates (exit 1 if one fails): CPU-ms per reading with 2 workers <= 1.15 x with 1 (the cores are shared with
PostgreSQL and the load generator, so a throughput ratio would measure the machine); proof lookup p99
<= 20 ms at 10^7. Goal, reported: >= 30,000 readings/s with N workers.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from pinseal_bench import network_anchor, network_drain, network_fill, network_load
from pinseal_bench.report import publish, stamp
from pinseal_devkit.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[2]
SECTION = "network"
COMMAND = "make bench-network"
CPU_RATIO_LIMIT = 1.15
LOOKUP_P99_LIMIT_MS = 20.0
LOOKUP_GATED_AT = 10_000_000
GOAL_READINGS_PER_S = 30_000


def size_label(n: int) -> str:
    """10**6 -> "1e6" (the JSON keys' spelling); other sizes as digits."""
    exp = round(math.log10(n)) if n > 0 else 0
    return f"1e{exp}" if 10**exp == n else str(n)


def run_drains(args: argparse.Namespace) -> dict[str, Any]:
    spec = network_load.BacklogSpec(
        args.readings, args.gateways, args.devices_per_gateway, args.batch_bundles
    )
    cache, build_s = network_load.build(spec, args.cache_dir)
    chains = network_load.load(cache)
    n = args.workers_n
    plan = {"sqlite": ("sqlite", 1), "pg1": ("postgresql", 1), "pg2": ("postgresql", 2)}
    plan["pgN"] = ("postgresql", n)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in args.runs}
    for round_no in range(args.rounds):  # interleaved, so a burst of other load hits one round, not one setup
        for name in args.runs:
            engine, workers = plan[name]
            if name == "pgN" and n == 2 and "pg2" in rounds:
                continue  # N = os.cpu_count() = 2: the 2-worker run is the N-worker run
            print(f"network: drain {name} round {round_no + 1} ({engine}, {workers} worker(s))", flush=True)
            r = network_drain.drain(
                engine, workers, cache, chains,
                expected_readings=spec.bundles * network_load.READINGS_PER_BUNDLE,
                in_flight=args.in_flight, timeout_s=args.drain_timeout,
            )  # fmt: skip
            rounds[name].append(r)
            print(
                f"network: {name}: {r['readings_per_s']:,} readings/s, "
                f"{r['cpu_ms_per_reading']} CPU-ms/reading, {r['db_bytes_per_reading']} B/reading",
                flush=True,
            )
    runs: dict[str, Any] = {}
    for name, done in rounds.items():
        if not done:
            runs[name] = {**runs["pg2"], "same_as": "pg2"}
            continue
        best = min(done, key=lambda r: r["cpu_ms_per_reading"])  # the least disturbed round
        runs[name] = {
            **best,
            "rounds": [{k: r[k] for k in ("readings_per_s", "cpu_ms_per_reading", "seconds")} for r in done],
        }
    return {
        "backlog": spec.__dict__,
        "backlog_build_s": round(build_s, 1),
        "workers_n": n,
        "in_flight": args.in_flight,
        "rounds": args.rounds,
        "runs": runs,
    }


def run_lookups(args: argparse.Namespace) -> dict[str, Any]:
    spec = network_fill.FillSpec(
        args.fill_devices, args.fill_gateways, args.leaves_per_batch, max(args.lookup_sizes), args.months
    )
    out: dict[str, Any] = {"fill": spec.__dict__, "proof_function": network_fill.PROOF_FUNCTION, "sizes": {}}
    with PostgresServer(settings=network_drain.PG_SETTINGS) as server:
        url = server.create_database("lookup")
        filler = network_fill.Filler(url, spec, args.fill_processes)
        out["partitions"] = filler.partitions
        for size in sorted(args.lookup_sizes):
            print(f"network: filling the lookup table to {size:,} bundles (COPY)", flush=True)
            fill_s = filler.grow_to(size)
            settle_s = filler.settle()
            timing = network_fill.time_lookups(url, filler.sample, args.lookups)
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:
                db_bytes = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
            out["sizes"][size_label(size)] = {
                "bundles": filler.bundles,
                "fill_s": round(fill_s, 1),
                "vacuum_s": round(settle_s, 1),
                "db_bytes": db_bytes,
                **timing,
            }
            print(
                f"network: {size:,} bundles: p50 {timing['p50_ms']} ms, p99 {timing['p99_ms']} ms", flush=True
            )
    return out


def figures(result: dict[str, Any]) -> dict[str, Any]:
    """The flat figures and the gates, from the runs."""
    runs = result["drain"]["runs"]
    flat: dict[str, Any] = {}
    for name, r in runs.items():
        flat[f"readings_per_s_{name}"] = r["readings_per_s"]
        flat[f"db_bytes_per_reading_{name}"] = r["db_bytes_per_reading"]
    for key, name in (("1", "pg1"), ("2", "pg2"), ("N", "pgN"), ("sqlite", "sqlite")):
        if name in runs:
            flat[f"cpu_ms_per_reading_{key}"] = runs[name]["cpu_ms_per_reading"]
    for label, timing in result["lookup"]["sizes"].items():
        flat[f"proof_lookup_p99_ms_{label}"] = timing["p99_ms"]
        flat[f"proof_lookup_p50_ms_{label}"] = timing["p50_ms"]
    gates: dict[str, Any] = {}
    if "cpu_ms_per_reading_1" in flat and "cpu_ms_per_reading_2" in flat:
        ratio = flat["cpu_ms_per_reading_2"] / flat["cpu_ms_per_reading_1"]
        flat["cpu_ratio_2_to_1"] = round(ratio, 3)
        gates["cpu_ms_per_reading_2_over_1"] = {
            "value": round(ratio, 3),
            "limit": CPU_RATIO_LIMIT,
            "ok": ratio <= CPU_RATIO_LIMIT,
        }
    gated = f"proof_lookup_p99_ms_{size_label(LOOKUP_GATED_AT)}"
    if gated in flat:
        gates[gated] = {
            "value": flat[gated],
            "limit": LOOKUP_P99_LIMIT_MS,
            "ok": flat[gated] <= LOOKUP_P99_LIMIT_MS,
        }
    if "readings_per_s_pgN" in flat:
        flat["goal_readings_per_s_pgN"] = {
            "value": flat["readings_per_s_pgN"],
            "goal": GOAL_READINGS_PER_S,
            "met": flat["readings_per_s_pgN"] >= GOAL_READINGS_PER_S,
        }
    flat["gates"] = gates
    return flat


def _row(label: str, runs: dict[str, Any], cell: Any) -> str:
    return f"| {label} | " + " | ".join(cell(r) for r in runs.values()) + " |"


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    drain, lookup = r["drain"], r["lookup"]
    runs = drain["runs"]
    spec = drain["backlog"]
    names = {
        "sqlite": "SQLite",
        "pg1": "PostgreSQL, 1 worker",
        "pg2": "PostgreSQL, 2 workers",
        "pgN": f"PostgreSQL, N = {drain['workers_n']} workers",
    }
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        "## Network ingest: backlog drain, proof lookups, anchoring",
        "",
        f"Command: `{COMMAND}` ({r['measured_at']}, {r['total_s'] / 60:.1f} min in all). "
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['os']}, Python {m['python']}. "
        "The ingest, PostgreSQL and the load generator share these cores.",
        "",
        f"**Backlog drain**: {spec['readings']:,} readings in {spec['readings'] // 16:,} sixteen-reading "
        f"bundles from {spec['gateways']} gateways ({spec['devices_per_gateway']} devices each), each "
        f"gateway's chain of signed batches ({spec['batch_bundles']} bundles each) built before timing and "
        f"POSTed in order by a separate load-generator process ({drain['in_flight']} requests in flight), "
        "into a fresh database per run; PostgreSQL with fsync and synchronous_commit on. Timed from the "
        f"first POST until the database holds every batch; best of {drain['rounds']} interleaved rounds "
        "by CPU-ms per reading (every round in the JSON). Building the backlog took "
        f"{drain['backlog_build_s']} s (0: cached under build/bench/network-cache/). CPU from /proc "
        "(utime + stime of every ingest process and every PostgreSQL process, exited children included) "
        "per stored reading.",
        "",
        "| | " + " | ".join(names[n] for n in runs) + " |",
        "|---|" + "---:|" * len(runs),
        _row("readings/s", runs, lambda x: f"{x['readings_per_s']:,.0f}"),
        _row("seconds", runs, lambda x: f"{x['seconds']}"),
        _row("CPU-ms per reading (ingest + PostgreSQL)", runs, lambda x: f"{x['cpu_ms_per_reading']:.4f}"),
        _row(
            "of it PostgreSQL",
            runs,
            lambda x: (
                f"{x['cpu_ms']['postgresql'] / x['readings']:.4f}" if x["cpu_ms"]["postgresql"] else "-"
            ),
        ),
        _row("ingest CPU s / wall s", runs, lambda x: f"{x['cpu_ms']['ingest'] / 1000 / x['seconds']:.2f}"),
        _row("load generator CPU-ms per reading", runs, lambda x: f"{x['loadgen_cpu_ms_per_reading']:.4f}"),
        _row("database bytes per reading", runs, lambda x: f"{x['db_bytes_per_reading']:.1f}"),
        _row(
            "lost readings / duplicated bundles",
            runs,
            lambda x: f"{x['lost_readings']} / {x['duplicated_bundles']}",
        ),
        _row("retried POSTs", runs, lambda x: str(x["posted"]["retries"])),
        "",
    ]
    if runs.get("pgN", {}).get("same_as"):
        lines += [
            f"N = os.cpu_count() = {drain['workers_n']} here, so the N-worker column is the 2-worker run.",
            "",
        ]
    lines += [
        "Database bytes: the SQLite file and its WAL; PostgreSQL's `pg_database_size` (tables, indexes and "
        "the catalog, not the server's WAL).",
        "",
    ]
    fill = lookup["fill"]
    lines += [
        f"**Proof lookup**: the ingest's schema on PostgreSQL filled with COPY: really signed one-reading "
        f"bundles from {fill['devices']:,} device keys, {fill['leaves_per_batch']:,} per batch in signed "
        f"batches of {fill['gateways']} gateways' chains, signed times spread over {fill['months']} months "
        f"({lookup['partitions']} monthly partitions); then VACUUM (ANALYZE) and CHECKPOINT (the table at "
        "rest, not autovacuum working through the bulk load while lookups are timed), and random lookups of "
        f"stored bundle hashes through the Database interface with {lookup['proof_function']}.",
        "",
        "| bundles | p50 ms | p99 ms | max ms | lookups | database bytes | COPY s (step) | VACUUM s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in lookup["sizes"].values():
        lines.append(
            f"| {t['bundles']:,} | {t['p50_ms']} | {t['p99_ms']} | {t['max_ms']} | {t['lookups']:,} | "
            f"{t['db_bytes']:,} | {t['fill_s']} | {t['vacuum_s']} |"
        )
    lines += [
        "",
        f"The whole table fits in this machine's page cache ({r['ram_bytes'] / 2**30:.0f} GiB of RAM), so "
        "these are lookups of rows in memory: the query plans' and the proof assembly's cost, not a disk's.",
        "",
    ]
    anchor = r["anchor"]
    if anchor is None:
        lines += [f"**Anchoring cost**: {r['anchor_note']}.", ""]
    else:
        lines += [
            f"**Anchoring cost** at the default interval of {anchor['interval_s']:.0f} s "
            f"({r['anchor_note']}): "
            + "; ".join(
                f"{mode}: {anchor[mode]['anchors_per_day']:.0f} transactions and "
                f"{anchor[mode]['gas_per_day']:,} gas per day ({anchor['gas_per_tx'][mode]:,} gas each)"
                for mode in ("calldata", "contract")
            )
            + ".",
            "",
        ]
    gates = r["gates"]
    lines.append("Gates:")
    for name, gate in gates.items():
        lines.append(
            f"- `{name}` {gate['value']} (limit {gate['limit']}): {'ok' if gate['ok'] else 'FAILED'}"
        )
    goal = r.get("goal_readings_per_s_pgN")
    if goal:
        lines.append(
            f"- goal (reported, not gated): >= {goal['goal']:,} readings/s with N workers: "
            f"{goal['value']:,.0f} ({'met' if goal['met'] else 'not met'})"
        )
    lines.append(f"<!-- bench:{SECTION}:end -->")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--gateways", type=int, default=100)
    parser.add_argument("--devices-per-gateway", type=int, default=10)
    parser.add_argument("--batch-bundles", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=2, help="drains per setup, interleaved; the least disturbed is reported"
    )
    parser.add_argument("--workers-n", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--runs", default="sqlite,pg1,pg2,pgN", type=lambda s: s.split(","))
    parser.add_argument("--drain-timeout", type=float, default=900)
    parser.add_argument(
        "--lookup-sizes", default="1e6,1e7", type=lambda s: [int(float(x)) for x in s.split(",")]
    )
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--fill-devices", type=int, default=3000)
    parser.add_argument("--fill-gateways", type=int, default=20)
    parser.add_argument("--leaves-per-batch", type=int, default=1000)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--fill-processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-anchor", action="store_true", help="skip the anchoring cost")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "build" / "bench" / "network-cache")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "network.json")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    result: dict[str, Any] = {"drain": run_drains(args), "lookup": run_lookups(args)}
    if args.no_anchor:
        result["anchor"], result["anchor_note"] = None, "not measured (--no-anchor)"
    else:
        result["anchor"], result["anchor_note"] = network_anchor.anchor_cost()
    result["total_s"] = round(time.perf_counter() - started, 1)
    result["ram_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    result = stamp({**figures(result), **result})
    publish(result, args.out, args.doc, SECTION, render(result))
    return 0 if all(g["ok"] for g in result["gates"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
