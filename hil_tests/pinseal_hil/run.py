"""`make run`: broker, gateway, network ingest and a few devices on this machine, readings flowing.

Everything is real and local: Mosquitto with the gateway-generated ACL, `pinseal-gateway run`,
`pinseal-ingest run`, and devices that sign each bundle on the host and check each signed ack. State is kept
under --workdir (default build/run), so a second run continues the devices' counters and the gateway's
batch chain. Stop with Ctrl-C; `--duration S` stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pinseal_hil.simdevice import AckEvent, SimulatedDevice, drain, load_or_create_key
from pinseal_hil.stack import Stack
from pinseal_protocol import keys


def _secret(path: Path, make: Callable[[], str]) -> str:
    """A device credential kept next to its key (0600), as a board keeps its config on flash."""
    if path.exists():
        return path.read_text().strip()
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def load_device_state(path: Path, device: SimulatedDevice) -> None:
    """The counter and chain survive restarts (a device's counter only grows); the boot counter steps."""
    if path.exists():
        state = json.loads(path.read_text())
        device.seq, device.prev, device.boot = state["seq"], bytes.fromhex(state["prev"]), state["boot"] + 1


def save_device_state(path: Path, device: SimulatedDevice) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"seq": device.seq, "prev": device.prev.hex(), "boot": device.boot}))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("build/run"))
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--interval-s", type=float, default=2.0, help="time between a device's bundles")
    parser.add_argument("--per-bundle", type=int, default=1, help="readings sealed per signature")
    parser.add_argument("--batch-interval-s", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=0, help="seconds to run, 0 = until Ctrl-C")
    args = parser.parse_args(argv)

    stack = Stack(args.workdir, batch_interval_s=args.batch_interval_s)
    print(f"pinseal: preparing the stack in {stack.workdir}", flush=True)
    stack.prepare()
    gateway_public = keys.load_public_key(stack.gateway_public_key)
    device_dir = stack.workdir / "devices"
    device_dir.mkdir(exist_ok=True)
    devices: list[tuple[SimulatedDevice, Path]] = []
    for i in range(args.devices):
        key = load_or_create_key(device_dir / f"device-{i}.key")
        kid_hex = keys.key_id_hex(key.public_key())
        public_hex = keys.public_key_bytes(key.public_key()).hex()
        password = _secret(
            device_dir / f"device-{i}.mqtt-password",
            lambda public_hex=public_hex, i=i: stack.register_device(
                public_hex, f"simulated-{i}", max(1, round(args.interval_s))
            ),
        )
        device = SimulatedDevice(key, password, gateway_public, per_bundle=args.per_bundle)
        load_device_state(device_dir / f"device-{i}.state", device)
        devices.append((device, device_dir / f"device-{i}.state"))
        print(f"device {i}: key id {kid_hex} (key and counter kept in {device_dir})", flush=True)

    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    stack.start()
    print(
        f"pinseal: mosquitto on 127.0.0.1:{stack.mqtt_port}, gateway API {stack.gateway_url} "
        f"(/status, /metrics, /proofs/<hash>), network ingest on 127.0.0.1:{stack.ingest_port}; "
        f"logs in {stack.workdir / 'logs'}",
        flush=True,
    )
    acked = 0

    def show_ack(event: AckEvent) -> None:
        nonlocal acked
        acked += 1
        print(
            f"ack    | device {event.device[:8]}: stored through seq {event.seq}, bundle "
            f"{event.bundle_hash.hex()[:16]}..., signed by the gateway (verified)",
            flush=True,
        )

    try:
        for device, _ in devices:
            device.connect("127.0.0.1", stack.mqtt_port)
        started = time.monotonic()
        next_send = started
        next_report = started + 10
        while not stopping and (args.duration <= 0 or time.monotonic() - started < args.duration):
            now = time.monotonic()
            if now >= next_send:
                for device, state_path in devices:
                    data = device.seal_next()
                    save_device_state(state_path, device)  # before sending: never reuse a counter
                    device.publish(data)
                    print(
                        f"device | {device.kid_hex[:8]}: sealed readings {device.seq - args.per_bundle}.."
                        f"{device.seq - 1} ({len(data)} bytes, Ed25519) and published",
                        flush=True,
                    )
                next_send += args.interval_s
            for device, _ in devices:
                drain(device.acks, show_ack)
            if now >= next_report:
                counts = stack.gateway_status()["counts"]
                print(
                    f"status | gateway: {counts['bundles']} bundles, {counts['batches']} batches, "
                    f"outbox {stack.gateway_status()['outbox_depth']}; ingest: "
                    + " ".join(stack.ingest_stats().split()),
                    flush=True,
                )
                next_report += 10
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        for device, _ in devices:
            device.close()
        stack.stop()
    print(f"pinseal: stopped; {acked} acks received and verified this run", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
