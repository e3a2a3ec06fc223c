"""`make bench-gateway`: the gateway end to end under load, on this machine, load generator included.

One run, side by side:
- accepted_per_s: 1,000+ registered devices publish pre-signed one-reading bundles through the real
  Mosquitto (each as itself, ACL on) at QoS 1 in a closed loop; counted from the gateway's signed acks the
  load generator receives (received, verified, committed, acked). The median of --rounds rounds (a single
  round's rate swings by a quarter on this shared machine); each round's rate is in the JSON.
- readings_per_s_at_16: the same with 16 readings per bundle, counted in readings (median of as many rounds).
- p50_ms / p99_ms: publish-to-ack latency at 50% of accepted_per_s, open loop.
- raw_subscriber_per_s: the same load with a bare paho QoS 1 subscriber in place of the gateway (the
  median of as many rounds), under a read-only broker login of its own (one login, one session).
- verify_per_s: bare `cryptography` Ed25519 verifies on one core.
- lost / duplicated: from the acks the load generator got, and from the network ingest's store after the
  gateway's uplink drained — never from the gateway's own account of itself.
- cpu: per measured phase, the CPU time (utime+stime from /proc/<pid>/stat) of the gateway (with its verify
  worker process), Mosquitto, the network ingest and the load generator (this process), in CPU-ms per
  acked bundle; "other" is the rest of
  the machine's busy time (kernel, other processes), "idle" the machine's idle share over the phase.
Writes build/bench/gateway.json and the gateway section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_bench import loadgen
from pinseal_bench.report import publish, stamp
from pinseal_devkit.simdevice import SimDevice
from pinseal_devkit.stack import Stack, wait_until
from pinseal_gateway import broker
from pinseal_gateway.store import devices as device_store
from pinseal_gateway.store.db import Database

REPO = Path(__file__).resolve().parents[2]
SECTION = "gateway"
COMMAND = "make bench-gateway"


def verify_per_s(seconds: float = 2.0) -> float:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    message = bytes(134)
    signature = key.sign(message)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            public.verify(signature, message)
        n += 200
    return n / (time.perf_counter() - start)


CLK_TCK = os.sysconf("SC_CLK_TCK")
CPU_COLUMNS = ("gateway", "mosquitto", "ingest", "loadgen")
WITH_DESCENDANTS = {"gateway"}  # the load generator's children are the stack's processes, counted apart


def process_cpu_s(pid: int, descendants: bool = False) -> float:
    """utime + stime of a process (all its threads), in seconds; with `descendants`, plus those of its
    running child processes, recursively (the gateway's verify worker)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is the state (field 3): utime, stime are 14, 15
    total = (int(fields[11]) + int(fields[12])) / CLK_TCK
    if descendants:
        for child in children(pid):
            with contextlib.suppress(OSError):  # exited meanwhile
                total += process_cpu_s(child, descendants=True)
    return total


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (over all its threads)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def machine_cpu_s() -> tuple[float, float]:
    """(idle, total) CPU seconds of the whole machine since boot, over all cores (idle includes iowait)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (ticks[3] + ticks[4]) / CLK_TCK, sum(ticks) / CLK_TCK


class CpuMeter:
    """CPU time of named processes and the machine's idle share between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def start(self) -> None:
        self.proc0 = {name: process_cpu_s(pid, name in WITH_DESCENDANTS) for name, pid in self.pids.items()}
        self.own0 = {name: process_cpu_s(self.pids[name]) for name in WITH_DESCENDANTS if name in self.pids}
        self.idle0, self.total0 = machine_cpu_s()
        self.wall0 = time.perf_counter()

    def stop(self, bundles: int) -> dict[str, Any]:
        """CPU-ms per bundle for each process and for the rest of the machine, plus the idle share."""
        wall = time.perf_counter() - self.wall0
        used = {
            name: process_cpu_s(pid, name in WITH_DESCENDANTS) - self.proc0[name]
            for name, pid in self.pids.items()
        }
        idle1, total1 = machine_cpu_s()
        idle, total = idle1 - self.idle0, total1 - self.total0
        per = 1000 / max(bundles, 1)
        ms = {name: round(s * per, 3) for name, s in used.items()}
        ms["other"] = round(max(0.0, total - idle - sum(used.values())) * per, 3)
        # of which in the process itself (the gateway's event loop, database and ack threads), the rest
        # in its children (the verify worker)
        own = {name: round((process_cpu_s(self.pids[name]) - self.own0[name]) * per, 3) for name in self.own0}
        return {
            "wall_s": round(wall, 2),
            "bundles": bundles,
            "ms_per_bundle": ms,
            "busy_ms_per_bundle": round((total - idle) * per, 3),
            "own_process_ms_per_bundle": own,
            "idle_share": round(idle / total, 3) if total > 0 else 0.0,
        }


def register(stack: Stack, devices: list[SimDevice]) -> None:
    """Register every device with the gateway (fresh MQTT password each) and the network ingest."""
    config_db = stack.workdir / "gateway" / "gateway.sqlite"
    db = Database(config_db)
    try:
        for i, device in enumerate(devices):
            device.password = device_store.new_mqtt_password()
            public = bytes.fromhex(device.public_key_hex)
            pw_hash = device_store.mosquitto_password_hash(device.password)
            db.run_sync(
                lambda conn, public=public, i=i, pw_hash=pw_hash: device_store.add_device(
                    conn, public, label=f"bench-{i}", expected_interval_s=60, password_hash=pw_hash
                )
            )
    finally:
        db.close()
    export = stack.workdir / "devices.json"
    export.write_text(stack.gateway_cli("devices", "export"))
    stack.ingest_cli("devices", "import", str(export))


def ensure_alive(stack: Stack, name: str) -> None:
    """A crashed process must fail the benchmark, not leave it waiting out its timeouts."""
    proc = stack.procs.get(name)
    if proc is None or proc.poll() is not None:
        raise RuntimeError(f"{name} is not running; see {stack.logs / (name + '.log')}")


async def phase(
    port: int,
    devices: list[SimDevice],
    *,
    window: int = 2,
    rate: float | None = None,
    complete_on: str = "ack",
    timeout_s: float = 300,
    cpu: CpuMeter | None = None,
    cpu_out: dict[str, Any] | None = None,
) -> loadgen.Results:
    """One measured phase; with `cpu`, the CPU split from first publish to last ack goes in cpu_out."""
    gen = loadgen.LoadGenerator("127.0.0.1", port, devices, window=window, rate=rate, complete_on=complete_on)
    await gen.connect()
    try:
        if cpu is not None:
            cpu.start()
        results = await gen.run(timeout_s)
        if cpu is not None and cpu_out is not None:
            cpu_out.update(cpu.stop(results.acked))
        return results
    finally:
        await gen.close()


def round_slices(devices: list[SimDevice], attr: str, per_round: int, rounds: int) -> list[list[SimDevice]]:
    """Each round's devices: the same keys, the next `per_round` of their presigned bundles in `attr`."""
    return [
        [
            SimDevice(d.key, d.password, bundles=getattr(d, attr)[k * per_round : (k + 1) * per_round])
            for d in devices
        ]
        for k in range(rounds)
    ]


async def closed_loop_rounds(
    stack: Stack,
    label: str,
    rounds: list[list[SimDevice]],
    window: int,
    meter: CpuMeter,
    cpu_out: dict[str, Any],
) -> list[loadgen.Results]:
    """One closed-loop phase per round; the middle round's CPU split goes in `cpu_out`."""
    results = []
    for k, devices in enumerate(rounds):
        print(f"bench: {label}, closed loop, round {k + 1} of {len(rounds)}", flush=True)
        middle = k == len(rounds) // 2
        results.append(
            await phase(
                stack.mqtt_port,
                devices,
                window=window,
                cpu=meter if middle else None,
                cpu_out=cpu_out if middle else None,
            )
        )
        ensure_alive(stack, "gateway")
    return results


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1] if len(values) > 1 else 0.0
    )


RAW_SUBSCRIBER = "pinseal-bench-raw-subscriber"


def raw_subscriber(stack: Stack, password: str, seconds: float) -> subprocess.Popen[str]:
    """A bare paho subscriber under a read-only login of its own (the broker ties a session to a login:
    as the gateway, its clean session would discard the gateway's persistent one)."""
    code = (
        "import sys, time, paho.mqtt.client as mqtt\n"
        "n = 0; t0 = t1 = None\n"
        "def on_message(c, u, m):\n"
        "    global n, t0, t1\n"
        "    n += 1; now = time.perf_counter(); t0 = t0 or now; t1 = now\n"
        "c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id='raw-subscriber', clean_session=True)\n"
        f"c.username_pw_set({RAW_SUBSCRIBER!r}, {password!r})\n"
        "c.on_message = on_message\n"
        f"c.connect('127.0.0.1', {stack.mqtt_port}); c.subscribe('pinseal/v1/+/up', qos=1)\n"
        f"end = time.time() + {seconds}\n"
        "while time.time() < end: c.loop(0.05)\n"
        "print(n, (n - 1) / (t1 - t0) if n > 1 else 0.0)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="pinseal-bench-"))
    # Batches as a deployment seals them: once a minute (the default), whatever their size. The network
    # ingest then verifies a batch after the measured window instead of inside it: on a real deployment it
    # runs on the network's servers, not on the gateway's two cores. All bundles of the run go in one
    # batch, which must stay under the ingest's 16 MB body limit: ~49,000 one-reading + 6,000 16-reading.
    stack = Stack(workdir, batch_interval_s=60.0, batch_max_bundles=200_000)
    stack.prepare()
    n = args.devices
    devices = SimDevice.fleet(n)
    print(
        f"bench: presigning {n} devices x ({args.rounds} x {args.bundles} one-reading + "
        f"{args.rounds} x {args.bundles16} 16-reading + {args.latency_bundles} latency) bundles",
        flush=True,
    )
    now_s = int(time.time())
    for d in devices:  # the 16-reading bundles continue each device's chain after its one-reading ones
        d.bundles = d.presign(args.rounds * args.bundles + args.latency_bundles, per_bundle=1, now_s=now_s)
        d.bundles16 = d.presign(args.rounds * args.bundles16, per_bundle=16, now_s=now_s)  # type: ignore[attr-defined]
    register(stack, devices)
    stack.start()
    result: dict[str, Any] = {"devices": n}
    cpu: dict[str, dict[str, Any]] = {"one_reading": {}, "latency": {}, "sixteen": {}, "raw": {}}
    result["cpu"] = cpu
    meter = CpuMeter({name: stack.procs[name].pid for name in ("gateway", "mosquitto", "ingest")})
    meter.pids["loadgen"] = os.getpid()
    try:
        # Rounds of the same closed loop, the median reported: one round's rate swings by a quarter with
        # what else this shared machine runs. The CPU split is the middle round's.
        ones = await closed_loop_rounds(
            stack,
            "one-reading bundles",
            round_slices(devices, "bundles", args.bundles, args.rounds),
            args.window,
            meter,
            cpu["one_reading"],
        )
        result["accepted_per_s_rounds"] = [round(r.ack_rate(), 1) for r in ones]
        result["accepted_per_s"] = statistics.median(result["accepted_per_s_rounds"])
        lat = [SimDevice(d.key, d.password, bundles=d.bundles[args.rounds * args.bundles :]) for d in devices]
        rate = max(1.0, 0.5 * result["accepted_per_s"])
        print(f"bench: latency at {rate:.0f} bundles/s (50%), open loop", flush=True)
        r2 = await phase(stack.mqtt_port, lat, rate=rate, cpu=meter, cpu_out=cpu["latency"])
        ensure_alive(stack, "gateway")
        result["p50_ms"] = round(percentile(r2.latencies_ms, 50), 2)
        result["p99_ms"] = round(percentile(r2.latencies_ms, 99), 2)
        result["latency_rate_per_s"] = round(rate, 1)
        sixteens = await closed_loop_rounds(
            stack,
            "16-reading bundles",
            round_slices(devices, "bundles16", args.bundles16, args.rounds),
            args.window,
            meter,
            cpu["sixteen"],
        )
        result["readings_per_s_at_16_rounds"] = [round(16 * r.ack_rate(), 1) for r in sixteens]
        result["readings_per_s_at_16"] = statistics.median(result["readings_per_s_at_16_rounds"])
        phases = [*ones, r2, *sixteens]
        published = sum(r.published for r in phases)
        result["lost_by_acks"] = published - sum(r.acked for r in phases)
        result["duplicated_by_acks"] = sum(r.duplicate_acks for r in phases)
        print("bench: waiting for the uplink to drain to the network ingest", flush=True)
        ingest = stack.ingest_db

        def drained() -> bool:
            with sqlite3.connect(ingest) as conn:
                return conn.execute("SELECT count(*) FROM bundles").fetchone()[0] >= published

        wait_until(drained, 240, 0.5)
        with sqlite3.connect(ingest) as conn:
            stored = conn.execute("SELECT count(*) FROM bundles").fetchone()[0]
            distinct = conn.execute("SELECT count(DISTINCT hash) FROM bundles").fetchone()[0]
        result["lost_at_ingest"] = published - distinct
        result["duplicated_at_ingest"] = stored - distinct
        result["lost"] = max(result["lost_by_acks"], result["lost_at_ingest"])
        result["duplicated"] = max(result["duplicated_by_acks"], result["duplicated_at_ingest"])
        result["published"] = published
    finally:
        gateway = stack.procs.pop("gateway")
        gateway.terminate()
        gateway.wait(30)
    try:
        print("bench: raw paho subscriber on the same broker and load", flush=True)
        password = device_store.new_mqtt_password()
        raw_devices = SimDevice.fleet(n)
        for d in raw_devices:
            d.bundles = d.presign(args.rounds * args.bundles, per_bundle=1, now_s=now_s)
        register(stack, raw_devices)
        stack.procs.pop("mosquitto").terminate()
        reader = broker.reader_user(RAW_SUBSCRIBER, device_store.mosquitto_password_hash(password))
        stack.start_broker_only([reader])
        raw_rounds = []
        for k, round_devices in enumerate(round_slices(raw_devices, "bundles", args.bundles, args.rounds)):
            sub = raw_subscriber(stack, password, seconds=args.raw_seconds)
            time.sleep(1.0)
            # The raw phase's "gateway" is the bare subscriber in its place; the ingest idles.
            middle = k == args.rounds // 2
            raw_pids = {"gateway": sub.pid, "mosquitto": stack.procs["mosquitto"].pid}
            raw_meter = CpuMeter({**raw_pids, "ingest": stack.procs["ingest"].pid, "loadgen": os.getpid()})
            await phase(
                stack.mqtt_port,
                round_devices,
                window=args.window,
                complete_on="puback",
                cpu=raw_meter if middle else None,
                cpu_out=cpu["raw"] if middle else None,
            )
            out, _ = sub.communicate(timeout=args.raw_seconds + 30)
            raw_rounds.append(round(float(out.split()[1]), 1))
        result["raw_subscriber_per_s"] = statistics.median(raw_rounds)
        result["raw_subscriber_per_s_rounds"] = raw_rounds
    finally:
        stack.stop()
    result["verify_per_s"] = round(verify_per_s(), 1)
    result["accepted_vs_raw"] = round(result["accepted_per_s"] / result["raw_subscriber_per_s"], 3)
    result["workdir"] = str(workdir)
    return result


TARGETS = [
    ("accepted_per_s", ">= 3,000", lambda r: r["accepted_per_s"] >= 3000),
    ("accepted_vs_raw", ">= 0.3", lambda r: r["accepted_vs_raw"] >= 0.3),
    ("readings_per_s_at_16", ">= 30,000", lambda r: r["readings_per_s_at_16"] >= 30000),
    ("p99_ms", "<= 250", lambda r: r["p99_ms"] <= 250),
    ("lost", "0", lambda r: r["lost"] == 0),
    ("duplicated", "0", lambda r: r["duplicated"] == 0),
]


CPU_PHASES = {
    "one_reading": "one-reading, closed loop",
    "latency": "one-reading, 50% open loop",
    "sixteen": "16-reading, closed loop",
    "raw": "raw subscriber (in the gateway column)",
}


def render_cpu(cpu: dict[str, dict[str, Any]]) -> list[str]:
    """The CPU split as a table: CPU-ms per acked bundle by process, and the machine's idle share."""
    head = " | ".join(f"`{c}`" for c in (*CPU_COLUMNS, "other"))
    rows = []
    for name, label in CPU_PHASES.items():
        c = cpu.get(name)
        if not c:
            continue
        ms = " | ".join(str(c["ms_per_bundle"].get(col, "-")) for col in (*CPU_COLUMNS, "other"))
        rows.append(
            f"| {label} | {c['bundles']} | {ms} | {c['busy_ms_per_bundle']} | {c['idle_share']:.0%} |"
        )
    return [
        "CPU-ms per acked bundle, from the first publish to the last ack of each phase (utime+stime from",
        "`/proc/<pid>/stat`, a process's children included: `gateway` counts its verify worker process;",
        "`other` is the rest of the machine's busy time: kernel, other processes). At 3,000 bundles/s the",
        "two cores allow 0.667 CPU-ms per bundle for everything together. Of `gateway`, in the gateway",
        "process itself (event loop, database and ack threads; the rest is its verify worker): "
        + ", ".join(
            f"{CPU_PHASES[n]} {c['own_process_ms_per_bundle'].get('gateway', '-')}"
            for n, c in cpu.items()
            if c and n in CPU_PHASES and c.get("own_process_ms_per_bundle")
        )
        + ".",
        "Other sessions share these two cores: the rates above fall with their load (`other`, `idle`),",
        "while the CPU-ms per bundle of the processes measured here are what this code controls.",
        "",
        f"| phase | bundles | {head} | busy | idle |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    rows = [f"| `{k}` | {result[k]} | {t} | {'yes' if ok(result) else '**no**'} |" for k, t, ok in TARGETS]
    return "\n".join(
        [
            f"<!-- bench:{SECTION}:start -->",
            "## Gateway: end to end through Mosquitto",
            "",
            f"Command: `{COMMAND}` ({result['measured_at']}). Machine: {m['cpu']}, {m['cores']} cores, "
            f"{m['os']}, Python {m['python']}; broker, gateway, network ingest and load generator all on it. "
            f"{result['devices']} registered devices, each connected as itself.",
            "",
            "| metric | measured | target | met |",
            "|---|---|---|---|",
            *rows,
            "",
            f"- Rounds (median reported): `accepted_per_s` {result.get('accepted_per_s_rounds')}, "
            f"`readings_per_s_at_16` {result.get('readings_per_s_at_16_rounds')}, "
            f"`raw_subscriber_per_s` {result.get('raw_subscriber_per_s_rounds')}.",
            f"- Baselines in the same run: `raw_subscriber_per_s` {result['raw_subscriber_per_s']} "
            "(a bare paho QoS 1 subscriber, same broker and load), "
            f"`verify_per_s` {result['verify_per_s']} (bare `cryptography` Ed25519 verifies on one core).",
            f"- `p50_ms` {result['p50_ms']}, `p99_ms` {result['p99_ms']}: publish to signed ack at "
            f"{result['latency_rate_per_s']} bundles/s (50% of accepted_per_s), open loop.",
            f"- `lost`/`duplicated`: {result['published']} bundles published; by the load generator's acks "
            f"{result['lost_by_acks']}/{result['duplicated_by_acks']}, at the network ingest after the "
            f"uplink drained {result['lost_at_ingest']}/{result['duplicated_at_ingest']}.",
            "",
            *render_cpu(result["cpu"]),
            f"<!-- bench:{SECTION}:end -->",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--bundles", type=int, default=13, help="one-reading bundles per device and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the one-reading and raw phases")
    parser.add_argument("--bundles16", type=int, default=2, help="16-reading bundles per device and round")
    parser.add_argument("--latency-bundles", type=int, default=4)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--raw-seconds", type=float, default=12)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "gateway.json")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    result = stamp(asyncio.run(run(args)))
    result["targets_met"] = {k: bool(ok(result)) for k, _, ok in TARGETS}
    publish(result, args.out, args.doc, SECTION, render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
