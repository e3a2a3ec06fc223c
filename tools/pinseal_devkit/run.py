"""`make run`: broker, gateway, network ingest and virtual boards running the real firmware, readings flowing.

Everything is real and local: Mosquitto with the gateway-generated ACL, `pinseal-gateway run`,
`pinseal-ingest run`, and virtual boards (the unmodified firmware in the MicroPython VM, board RAM modelled,
sensors at register level) provisioned the way an owner provisions a board: `pinseal-provision fleet init`,
then `pinseal-provision batch` (deploy, on-device key, certificate, registration, self-test) over each board's
serial port. State is kept under --workdir (default build/run): a second run finds its boards enrolled and
continues their counters and the gateway's batch chain. Stop with Ctrl-C; `--duration S` stops by itself.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pinseal_devkit import weather
from pinseal_devkit.devices import VBOARD_SSID, VBOARD_WIFI_PASSWORD
from pinseal_devkit.reading_feed import ReadingFeed
from pinseal_devkit.runlock import FolderBusy, lock_state_folder
from pinseal_devkit.stack import Stack, tool
from pinseal_gateway import broker
from pinseal_vboard import BoardHost, BoardOptions, VirtualBoard, load_profile
from pinseal_vboard.vm import REPO


def stable_ports(workdir: Path) -> dict[str, int]:
    """The stack's ports, chosen once: the boards' /config.json names the broker's."""
    path = workdir / "ports.json"
    if path.exists():
        return json.loads(path.read_text())
    ports = {
        "mqtt_port": broker.free_port(),
        "ingest_port": broker.free_port(),
        "http_port": broker.free_port(),
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ports))
    return ports


def provision(stack: Stack, boards: list[VirtualBoard], args: argparse.Namespace) -> None:
    """What an owner runs: the fleet key once, then deploy + enroll each new board; boards enrolled by an
    earlier run get the current firmware (deploy copies only what changed)."""
    fleet_key = stack.workdir / "fleet.key"
    if not fleet_key.exists():
        subprocess.run(
            [tool("pinseal-provision"), "fleet", "init", "--fleet-key", str(fleet_key)], check=True
        )
    fresh = [b for b in boards if not (b.flash_dir / "cert.cbor").exists()]
    enrolled = [b for b in boards if b not in fresh]
    for group, steps in ((fresh, "deploy,enroll"), (enrolled, "deploy")):
        if not group:
            continue
        print(f"pinseal: pinseal-provision batch --steps {steps} for {len(group)} board(s)", flush=True)
        report = stack.workdir / f"provisioning-{steps.replace(',', '-')}.json"
        cmd = [
            tool("pinseal-provision"), "batch", "--steps", steps, "--board", args.board,
            "--ports", *[b.serial_path for b in group],
            "--fleet-key", str(fleet_key), "--gateway-config", str(stack.gateway_config),
            "--ingest-db", str(stack.ingest_db), "--mqtt-port", str(stack.mqtt_port),
            "--wifi-ssid", VBOARD_SSID, "--wifi-password", VBOARD_WIFI_PASSWORD,
            "--interval", str(args.interval_s), "--bundle-readings", str(args.per_bundle),
            "--labels", *[args.labels[boards.index(b)] for b in group],
            "--state-dir", str(stack.workdir / "provisioning"), "--report", str(report),
        ]  # fmt: skip
        result = subprocess.run(cmd, text=True, capture_output=True)
        if result.returncode != 0:
            raise SystemExit(f"pinseal: provisioning failed: {result.stderr.strip()}\nsee {report}")
        for entry in json.loads(report.read_text()):
            detail = entry.get("detail", {})
            made = (
                f"key id {detail['key_id']} made on the board, self-test {detail.get('self_test')}; "
                if ("key_id" in detail)
                else ""
            )
            print(f"provision | {entry['port']}: {made}{detail.get('deploy')}", flush=True)


def stored(stack: Stack) -> dict[str, Any]:
    db_path = stack.workdir / "gateway" / "gateway.sqlite"
    if not db_path.exists():
        return {"bundles": 0, "readings": 0}
    with sqlite3.connect(db_path, timeout=10) as db:
        (bundles, readings) = db.execute(
            "SELECT count(*), coalesce(sum(n_readings), 0) FROM bundles"
        ).fetchone()
    return {"bundles": bundles, "readings": readings}


def board_names(count: int) -> list[str]:
    """One name per board, the same on the console, in the registries and for its flash folder."""
    return [f"board{i}" for i in range(1, count + 1)]


def commands(stack: Stack, boards: list[VirtualBoard], names: list[str]) -> list[str]:
    """Ready-to-paste commands for what people look at next, with this run's config and ports."""
    venv = Path(sys.executable).parent
    config = stack.gateway_config
    first = boards[0].serial_path if boards else "<port>"
    return [
        f"status:  {venv / 'pinseal-gateway'} status --config {config}",
        f"devices: {venv / 'pinseal-gateway'} devices list --config {config}",
        f"proof:   {venv / 'pinseal-gateway'} proof --config {config} <bundle-hash>",
        f"ingest:  {venv / 'pinseal-ingest'} stats --db {stack.ingest_db}",
        f"board:   {venv / 'mpremote'} connect {first} repl   ({names[0] if names else 'a board'}'s REPL; "
        "Ctrl-] leaves)",
        f"home assistant: MQTT broker 127.0.0.1:{stack.mqtt_port}, user homeassistant, password in "
        f"{stack.workdir / 'gateway' / 'homeassistant-password'} (discovery prefix homeassistant)",
    ]


def report_exits(stack: Stack) -> list[str]:
    """Print each child process that died, with the end of its log; returns their names."""
    gone = stack.exited()
    for name, code in gone:
        log_path = stack.log_of(name)
        tail = log_path.read_text(errors="replace").splitlines()[-8:] if log_path.exists() else []
        print(f"pinseal: {name} exited with code {code}; its log {log_path} ends:", flush=True)
        for line in tail:
            print(f"  {line}", flush=True)
    return [name for name, _ in gone]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("build/run"))
    parser.add_argument("--boards", type=int, default=3)
    parser.add_argument("--board", default="esp32_devkitc", help="board profile of the virtual boards")
    parser.add_argument("--interval-s", type=int, default=5, help="sampling interval of the boards")
    parser.add_argument("--per-bundle", type=int, default=4, help="readings sealed per signature")
    parser.add_argument("--speed", type=float, default=1.0, help="run the boards' clocks this much faster")
    parser.add_argument("--batch-interval-s", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=0, help="seconds to run, 0 = until Ctrl-C")
    args = parser.parse_args(argv)
    if args.boards < 1:
        parser.error("--boards: at least 1")
    try:
        profile = load_profile(args.board)
    except (OSError, ValueError):
        known = ", ".join(p.parent.name for p in sorted((REPO / "boards").glob("*/board.json")))
        parser.error(f"--board: no profile {args.board!r} (boards: {known})")

    workdir = args.workdir.resolve()
    try:
        lock = lock_state_folder(workdir)
    except FolderBusy as e:
        print(f"pinseal: {e}", file=sys.stderr, flush=True)
        return 1
    stack = Stack(workdir, batch_interval_s=args.batch_interval_s, **stable_ports(workdir))
    print(f"pinseal: preparing the stack in {stack.workdir}", flush=True)
    stack.prepare()
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    host = BoardHost()
    names = board_names(args.boards)
    boards = []
    for name in names:
        folder = workdir / "boards" / name
        sensors = weather.write_script(folder / "sensors.json", name, profile)
        options = BoardOptions(board=args.board, flash_dir=folder / "flash", firmware=None, sensors=sensors)
        boards.append(VirtualBoard(options, host=host))
    args.labels = names
    before = stored(stack)
    feed = ReadingFeed(stack.workdir / "gateway" / "gateway.sqlite")
    failed = False
    try:
        for name, b in zip(names, boards, strict=True):
            b.start()
            print(f"{name}: {args.board} on {b.serial_path} (flash {b.flash_dir})", flush=True)
        provision(stack, boards, args)
        feed.start_at_end()
        stack.start()
        print(
            f"pinseal: mosquitto on 127.0.0.1:{stack.mqtt_port}, gateway API {stack.gateway_url} "
            f"(/status, /metrics, /proofs/<hash>), network ingest on 127.0.0.1:{stack.ingest_port}; "
            f"logs in {stack.workdir / 'logs'}",
            flush=True,
        )
        for line in commands(stack, boards, names):
            print(f"   try | {line}", flush=True)
        marks = []
        for b in boards:
            if args.speed != 1.0:
                b.clock(speed=args.speed)
            marks.append(b.mark())
            b.reset()  # boot into the application, now that the broker knows the boards
        started = time.monotonic()
        next_report = started + 10
        while not stopping and (args.duration <= 0 or time.monotonic() - started < args.duration):
            for i, b in enumerate(boards):  # the boards' serial consoles, line by line
                text = b.text(marks[i])
                lines = text.split("\r\n")[:-1]
                for line in lines:
                    print(f"{names[i]:>7} | {line}", flush=True)
                marks[i] += len("\r\n".join(lines).encode()) + (2 if lines else 0)
            for line in feed.lines():  # what the gateway verified and stored, in units
                print(f"reading | {line}", flush=True)
            if report_exits(stack):
                failed = True
                break
            if time.monotonic() >= next_report:
                status = stack.gateway_status()
                print(
                    f" status | gateway: {status['counts']['bundles']} bundles, "
                    f"{status['counts']['batches']} batches, uplink outbox {status['outbox_depth']}; ingest: "
                    + " ".join(stack.ingest_stats().split()),
                    flush=True,
                )
                next_report += 10
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for b in boards:
            b.stop()
        host.close()
        stack.stop()
        lock.close()
    after = stored(stack)
    print(
        f"pinseal: {'stopped after a failure' if failed else 'stopped'}; "
        f"{after['bundles'] - before['bundles']} bundles "
        f"({after['readings'] - before['readings']} readings) from the boards stored this run",
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
