"""`make run` until the gateway exists: a device in the MicroPython VM seals readings; the host verifies them.

The device side is the unmodified firmware package running in the real MicroPython VM (key created there
from the host's CSPRNG, as a board creates it from its hardware RNG); each bundle it prints is verified
here with the host codec (cbor2 + cryptography), which shares no code with the firmware.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from pinseal_protocol.bundle import verify_bundle
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.errors import RejectedMessage
from pinseal_protocol.keys import load_public_key
from pinseal_protocol.senml import Reading
from pinseal_vboard.vm import REPO, VMOptions, node_executable, vm_command

DEVICE_SCRIPT = Path(__file__).with_name("demo_device.py")


def format_value(value: int | DecimalFraction | None) -> str:
    """A decimal fraction as the device meant it (mantissa x 10^exponent, digits kept): 2150e-2 -> 21.50."""
    if isinstance(value, DecimalFraction):
        return str(Decimal(value.mantissa).scaleb(value.exponent))
    return str(value)


def format_reading(reading: Reading) -> str:
    """One line per reading: its time and each record as name=value unit (or the sensor's error)."""
    when = datetime.fromtimestamp(reading.time, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    parts = []
    for record in reading.records:
        if record.string_value is not None:
            parts.append(f"{record.name}=error:{record.string_value}")
        else:
            parts.append(f"{record.name}={format_value(record.value)} {record.unit or ''}".rstrip())
    return f"{when}  " + "  ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--board", default="esp32_devkitc", help="board profile (RAM model)")
    parser.add_argument("--count", type=int, default=0, help="bundles to seal, 0 = until Ctrl-C")
    parser.add_argument("--per-bundle", type=int, default=4, help="readings sealed per signature")
    parser.add_argument("--interval-ms", type=int, default=1000, help="time between readings")
    args = parser.parse_args(argv)

    # The demo runs until Ctrl-C, so no wall-clock watchdog (timeout_s=0); the board's RAM is modelled.
    options = VMOptions.board(timeout_s=0)
    cmd = vm_command(DEVICE_SCRIPT, options, [str(args.count), str(args.per_bundle), str(args.interval_ms)])
    print(f"pinseal: starting a virtual {args.board} (MicroPython VM, 100,000-byte heap)", flush=True)
    accepted = 0
    with subprocess.Popen([node_executable(), *cmd], stdout=subprocess.PIPE, text=True, cwd=REPO) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                if not line.startswith("{"):
                    print(f"device | {line.rstrip()}", flush=True)
                    continue
                event = json.loads(line)
                if event["event"] == "identity":
                    public_key = load_public_key(bytes.fromhex(event["public_key"]))
                    print(f"device | key created on the device, key id {event['key_id']}", flush=True)
                    continue
                bundle_bytes = bytes.fromhex(event["bundle"])
                try:
                    bundle = verify_bundle(bundle_bytes, public_key)
                except RejectedMessage as exc:
                    print(f"host   | REJECTED ({exc.reason}): {exc}", flush=True)
                    continue
                accepted += 1
                print(
                    f"host   | bundle seq {bundle.seq}-{bundle.last_seq}, {len(bundle_bytes)} bytes, "
                    f"signature verified (cryptography), sealed in {event['seal_ms']:.1f} ms in the VM",
                    flush=True,
                )
                for reading in bundle.readings:
                    print(f"         {format_reading(reading)}", flush=True)
        except KeyboardInterrupt:
            proc.terminate()
    print(f"pinseal: {accepted} bundles verified", flush=True)
    return 0 if proc.returncode in (0, -15) else 1


if __name__ == "__main__":
    sys.exit(main())
