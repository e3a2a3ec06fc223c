"""Inside the guest (the host's filesystem as root, read-only, the run folder writable): start the system
D-Bus, bluetoothd, the HCI relay, Mosquitto and `pinseal-gateway run`, then wait until the host asks for
a stop (a file in the run folder), stop the gateway cleanly (its database is read by the host afterwards)
and return. Each step says what it does on the console, which the host keeps as the guest's log.

  python in_guest.py RUN_DIR GATEWAY_CONFIG BROKER_DIR
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BLUETOOTHD = "/usr/libexec/bluetooth/bluetoothd"


def say(text: str) -> None:
    print(f"in-guest: {text}", flush=True)


def wait_for(what: str, check: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"in-guest: no {what} within {timeout_s:g} s")
        time.sleep(0.2)


def _powered(env: dict[str, str]) -> bool:
    out = subprocess.run(["btmgmt", "info"], capture_output=True, text=True, env=env, timeout=10).stdout
    return "current settings: powered" in out


def _on_tmpfs(config: Path) -> tuple[Path, Path]:
    """The gateway's data folder copied to the guest's tmpfs, and a config pointing there: SQLite's WAL
    needs shared memory, which 9p does not give (the database is copied back to the run folder at the end)."""
    text = config.read_text()
    match = re.search(r'^data_dir = "([^"]+)"', text, re.M)
    if match is None:
        raise SystemExit(f"in-guest: no data_dir in {config}")
    data_dir = Path("/tmp/gateway-data")
    shutil.copytree(match.group(1), data_dir, dirs_exist_ok=True)
    moved = Path("/tmp/gateway.toml")
    moved.write_text(text.replace(match.group(0), f'data_dir = "{data_dir}"'))
    return moved, data_dir


def main(run_dir: Path, gateway_config: Path, broker_dir: Path) -> int:
    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    logs = run_dir / "guest-logs"
    logs.mkdir(exist_ok=True)
    procs = []

    def spawn(name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        out = (logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        procs.append(proc)
        say(f"started {name} (pid {proc.pid})")
        return proc

    os.makedirs("/run/dbus", exist_ok=True)
    subprocess.run(["dbus-daemon", "--system", "--fork", "--nopidfile"], check=True, env=env)
    say("system D-Bus up")
    # the board's controller must be on the line before the kernel's first HCI command, or the
    # controller's setup times out and bluetoothd never sees hci0: the host says when it is
    wait_for("the host's radio", lambda: (run_dir / "radio-ready").exists(), 120)
    # every HCI packet of the guest's controller, for reading a failed run with `btmon -r`
    spawn("btmon", ["btmon", "-w", str(logs / "hci.btsnoop")])
    spawn("vhci-relay", [sys.executable, str(HERE / "vhci_relay.py")])
    wait_for("hci0", lambda: Path("/sys/class/bluetooth/hci0").exists(), 30)
    spawn("bluetoothd", [BLUETOOTHD, "-n"])
    wait_for("hci0 powered by bluetoothd", lambda: _powered(env), 60)
    say(
        "hci0 up: "
        + subprocess.run(["btmgmt", "info"], capture_output=True, text=True, env=env)
        .stdout.split("\n")[2]
        .strip()
    )
    spawn("mosquitto", ["mosquitto", "-c", str(broker_dir / "mosquitto.conf")])
    gateway_config, data_dir = _on_tmpfs(gateway_config)
    gateway = spawn(
        "gateway",
        [str(Path(sys.executable).parent / "pinseal-gateway"), "run", "--config", str(gateway_config)],
    )
    stop_file = run_dir / "stop"
    while not stop_file.exists():
        if gateway.poll() is not None:
            say(f"the gateway exited with {gateway.returncode}")
            break
        time.sleep(0.5)
    if gateway.poll() is None:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(30)
        except subprocess.TimeoutExpired:
            gateway.kill()
    say(f"gateway stopped ({gateway.returncode})")
    for name in ("gateway.sqlite", "gateway.sqlite-wal", "gateway.sqlite-shm"):
        if (data_dir / name).exists():
            shutil.copyfile(data_dir / name, run_dir / name)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    (run_dir / "guest-done").write_text(str(gateway.returncode))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
