"""`make bench-transports`: what each link carries and costs, side by side in one run, against one gateway.

Link capacity is measured with host-simulated devices speaking each link's own framing, because a virtual
board seals only ~14 one-reading bundles a second and cannot load a link: MQTT devices are the gateway
benchmark's minimal clients (`loadgen`, QoS 1 through the real Mosquitto), serial devices are
`pinseal_devkit.wired_device` on pseudo-terminals the gateway reads with pyserial. Each device works stop
and wait, as the firmware does (one bundle in flight until its ack), every bundle pre-signed.

Each link runs twice: clean, for capacity and CPU, and under seeded disconnects (MQTT: connections dropped
without a DISCONNECT; serial: cables pulled and plugged in again) for the accounting gate: what was sealed
against what the gateway stored, by hash, and every reading stored once.

A pty has no baud rate, so serial's bundles/s is what the gateway's intake sustains; what a real line at
115,200 baud carries is computed from the frame size (10 bits a byte) and reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pinseal_bench.gateway import CpuMeter, register
from pinseal_bench.loadgen import LoadGenerator
from pinseal_bench.report import publish, stamp
from pinseal_devkit.simdevice import SimDevice
from pinseal_devkit.stack import Stack, wait_until
from pinseal_devkit.wired_device import WiredDevice
from pinseal_protocol import bundle as pbundle
from pinseal_protocol import mqtt_frames
from pinseal_protocol import serial_frames as sf

SECTION = "transports"
COMMAND = "make bench-transports"
READINGS_PER_BUNDLE = 4
BAUD = 115200


def presigned(n_devices: int, n_bundles: int) -> list[SimDevice]:
    devices = [SimDevice(per_bundle=READINGS_PER_BUNDLE) for _ in range(n_devices)]
    for d in devices:
        d.bundles = d.presign(n_bundles)
    return devices


def accounting(db_path: Path, devices: list[SimDevice]) -> dict[str, int]:
    """Sealed against stored, by bundle hash; readings stored more than once."""
    with sqlite3.connect(db_path) as db:
        lost = 0
        duplicated = 0
        for d in devices:
            rows = db.execute("SELECT hash, seq, last_seq FROM bundles WHERE kid = ?", (d.kid,)).fetchall()
            stored = {bytes(h) for h, _, _ in rows}
            lost += sum(1 for raw in d.bundles if pbundle.bundle_hash(raw) not in stored)
            seqs = [s for _, first, last in rows for s in range(first, last + 1)]
            duplicated += len(seqs) - len(set(seqs))
    return {"lost": lost, "duplicated": duplicated}


def run_mqtt(stack: Stack, devices: list[SimDevice], drops: int, seed: int) -> dict[str, Any]:
    async def main() -> tuple[Any, dict[str, Any]]:
        gen = LoadGenerator("127.0.0.1", stack.mqtt_port, devices, window=1)
        await gen.connect()
        meter = CpuMeter({"gateway": stack.procs["gateway"].pid, "broker": stack.procs["mosquitto"].pid})
        meter.start()
        dropper = asyncio.create_task(_drop_mqtt(gen, stack.mqtt_port, drops, seed)) if drops else None
        results = await gen.run(timeout_s=300)
        if dropper is not None:
            dropper.cancel()
        cpu = meter.stop(max(results.acked, 1))
        await gen.close()
        return results, cpu

    results, cpu = asyncio.run(main())
    link_bytes = sum(len(mqtt_frames.publish(d.up_topic, raw, 1, 2)) for d in devices for raw in d.bundles)
    bundle_bytes = sum(len(raw) for d in devices for raw in d.bundles)
    return {
        "bundles": results.acked,
        "bundles_per_s": round(results.ack_rate(), 1),
        "cpu_ms_per_bundle": cpu["ms_per_bundle"]["gateway"],
        "broker_cpu_ms_per_bundle": cpu["ms_per_bundle"]["broker"],
        "link_bytes_per_reading_ratio": round(link_bytes / bundle_bytes, 3),
        "disconnects": results.disconnects,
        "resent": results.resent,
    }


async def _drop_mqtt(gen: LoadGenerator, port: int, drops: int, seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(drops):
        await asyncio.sleep(rnd.uniform(0.005, 0.05))
        client = rnd.choice(gen.clients)
        if not client.done():
            client.drop("127.0.0.1", port)


def run_serial(wires: list[WiredDevice], meter: CpuMeter, drops: int, seed: int) -> dict[str, Any]:
    sealed = {id(w): [raw for raw in w.device.bundles] for w in wires}
    for w in wires:  # the pre-signed bundles into each device's outbox, with the last seq each covers
        key = w.device.key.public_key()
        for raw in w.device.bundles:
            w.outbox[pbundle.bundle_hash(raw)] = (raw, pbundle.verify_bundle(raw, key).last_seq)
    frame_bytes = sum(len(sf.encode(sf.KIND_BUNDLE, raw)) for raws in sealed.values() for raw in raws)
    bundle_bytes = sum(len(raw) for raws in sealed.values() for raw in raws)
    if not wait_until(lambda: all(w.linked for w in wires), 20, 0.05):
        raise RuntimeError("the gateway's hellos never reached the wired devices")
    done = [False] * len(wires)
    pulled = [0]

    def drive(i: int, w: WiredDevice) -> None:
        done[i] = w.drain(300, resend_after_s=1.0)

    def puller() -> None:
        rnd = random.Random(seed)
        for _ in range(drops):
            time.sleep(rnd.uniform(0.05, 0.3))
            w = rnd.choice(wires)
            if w.outbox:
                w.replug()
                pulled[0] += 1

    meter.start()
    start = time.perf_counter()
    threads = [threading.Thread(target=drive, args=(i, w)) for i, w in enumerate(wires)]
    if drops:
        threads.append(threading.Thread(target=puller))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    n = sum(len(raws) for raws in sealed.values())
    cpu = meter.stop(n)
    sent_bytes = sum(w.bytes_sent for w in wires)
    return {
        "bundles": n,
        "all_acked": all(done),
        "bundles_per_s": round(n / wall, 1),
        "cpu_ms_per_bundle": cpu["ms_per_bundle"]["gateway"],
        "link_bytes_per_reading_ratio": round(frame_bytes / bundle_bytes, 3),
        "sent_bytes_per_bundle_bytes": round(sent_bytes / bundle_bytes, 3),
        "bundles_per_s_at_115200_baud_per_line": round(BAUD / 10 / (frame_bytes / n), 1),
        "replugs": pulled[0],
        "resent": sum(w.frames_sent for w in wires) - n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pinseal_bench.transports", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--devices", type=int, default=8, help="devices per link (default 8)")
    parser.add_argument("--bundles", type=int, default=150, help="bundles per device per run (default 150)")
    parser.add_argument("--drops", type=int, default=20, help="seeded disconnects in the disconnect runs")
    parser.add_argument("--out", type=Path, default=Path("build/bench/transports.json"))
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "command": COMMAND,
        "devices_per_link": args.devices,
        "bundles_per_device": args.bundles,
    }
    with tempfile.TemporaryDirectory(prefix="pinseal-bench-transports-") as tmp:
        stack = Stack(Path(tmp) / "stack", batch_interval_s=5)
        stack.prepare()
        runs = {
            name: presigned(args.devices, args.bundles)
            for name in ("mqtt", "mqtt_drops", "serial", "serial_drops")
        }
        register(stack, [d for ds in runs.values() for d in ds])
        wires: dict[str, list[WiredDevice]] = {}
        gateway_public = stack.gateway_public_key
        for name in ("serial", "serial_drops"):
            wires[name] = [
                WiredDevice(d, gateway_public, Path(tmp) / f"tty-{name}-{i}")
                for i, d in enumerate(runs[name])
            ]
        stack.serial_ports = [str(w.path) for ws in wires.values() for w in ws]
        try:
            stack.start()
            db_path = stack.workdir / "gateway" / "gateway.sqlite"
            mqtt = run_mqtt(stack, runs["mqtt"], 0, 1)
            mqtt_drops = run_mqtt(stack, runs["mqtt_drops"], args.drops, 2)
            meter = CpuMeter({"gateway": stack.procs["gateway"].pid})
            serial = run_serial(wires["serial"], meter, 0, 3)
            serial_drops = run_serial(wires["serial_drops"], meter, args.drops, 4)
            time.sleep(1.0)  # the last commits
            result["mqtt"] = {**mqtt, **accounting(db_path, runs["mqtt"] + runs["mqtt_drops"])}
            result["mqtt"]["with_disconnects"] = mqtt_drops
            result["serial"] = {**serial, **accounting(db_path, runs["serial"] + runs["serial_drops"])}
            result["serial"]["with_disconnects"] = serial_drops
            result["ble"] = {
                "status": "not built yet (issue 15): the BLE link has no gateway intake to measure"
            }
        finally:
            for ws in wires.values():
                for w in ws:
                    w.close()
            stack.stop()
    gates = {
        "lost_and_duplicated_zero": all(
            result[k]["lost"] == 0 and result[k]["duplicated"] == 0 for k in ("mqtt", "serial")
        ),
        "link_bytes_within_1.25x": all(
            result[k]["link_bytes_per_reading_ratio"] <= 1.25 for k in ("mqtt", "serial")
        ),
    }
    result["gates"] = gates
    stamp(result)
    publish(result, args.out, args.doc, SECTION, render(result))
    return 0 if all(gates.values()) else 1


def render(r: dict[str, Any]) -> str:
    m, s = r["mqtt"], r["serial"]
    md, sd = m["with_disconnects"], s["with_disconnects"]
    mach = r["machine"]
    return f"""<!-- bench:{SECTION}:start -->
## Links: MQTT and serial side by side (`{COMMAND}`)

{r["devices_per_link"]} host-simulated devices a link, {r["bundles_per_device"]} pre-signed bundles of
{READINGS_PER_BUNDLE} readings each, stop and wait as the firmware does, one gateway, measured
{r["measured_at"]} on {mach["cpu"]} ({mach["cores"]} cores), Python {mach["python"]}. Each link ran
clean and then under seeded disconnects; BLE: {r["ble"]["status"]}.

| | MQTT | serial |
|---|---|---|
| bundles/s (clean run) | {m["bundles_per_s"]} | {s["bundles_per_s"]} |
| gateway CPU-ms per bundle | {m["cpu_ms_per_bundle"]} | {s["cpu_ms_per_bundle"]} |
| broker CPU-ms per bundle | {m["broker_cpu_ms_per_bundle"]} | none |
| link bytes / bundle bytes (up) | {m["link_bytes_per_reading_ratio"]} | {s["link_bytes_per_reading_ratio"]} |
| lost / duplicated (both runs) | {m["lost"]} / {m["duplicated"]} | {s["lost"]} / {s["duplicated"]} |
| disconnects in the second run | {md["disconnects"]} connections dropped | {sd["replugs"]} cables pulled |
| bundles sent again in it | {md["resent"]} | {sd["resent"]} |
| bundles/s with disconnects | {md["bundles_per_s"]} | {sd["bundles_per_s"]} |

One real line at 115,200 baud carries {s["bundles_per_s_at_115200_baud_per_line"]} such bundles/s (frame
bytes at 10 bits a byte); the serial figures above are the gateway's intake over ptys, which have no baud
rate. Gates: {", ".join(f"{k}: {'pass' if v else 'FAIL'}" for k, v in r["gates"].items())}.
<!-- bench:{SECTION}:end -->"""


if __name__ == "__main__":
    sys.exit(main())
