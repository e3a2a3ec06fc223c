"""The whole pinseal stack on this machine: Mosquitto, the gateway, the network ingest, and devices.

It is set up the way an owner and an operator would do it, through the command-line tools
(`pinseal-gateway keygen`, `devices add`, `broker-config`, `pinseal-ingest gateways add`, ...), with every
process a real one on loopback ports chosen at start. `make run` and the end-to-end tests both use it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pinseal_gateway import broker
from pinseal_gateway.keys import load_gateway_key
from pinseal_protocol import keys

VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A console script of this installation (.venv/bin/NAME), falling back to PATH."""
    path = VENV_BIN / name
    return str(path) if path.exists() else name


def run_tool(*args: str) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class Stack:
    """Ports, paths and processes of one local stack under `workdir` (kept between runs)."""

    workdir: Path
    mqtt_port: int = 0
    ingest_port: int = 0
    http_port: int = 0
    batch_interval_s: float = 5.0
    batch_max_bundles: int = 1000
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    gateway_public_key: bytes = b""
    gateway_env: dict[str, str] = field(default_factory=dict)
    """Extra environment of `pinseal-gateway run` (the suite's fault points, pinseal_gateway.faults)."""
    ingest_max_body: int | None = None
    """`pinseal-ingest run --max-body`; None: the ingest's default."""
    serial_ports: list[str] = field(default_factory=list)
    """The gateway's [serial] ports (virtual boards' UART ptys): written into its config at start."""
    extra_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    """More gateway.toml sections, e.g. {"ble": {"enabled": True}}, written at start."""

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self.mqtt_port = self.mqtt_port or broker.free_port()
        self.ingest_port = self.ingest_port or broker.free_port()
        self.http_port = self.http_port or broker.free_port()

    @property
    def gateway_config(self) -> Path:
        return self.workdir / "gateway.toml"

    @property
    def ingest_db(self) -> Path:
        return self.workdir / "ingest" / "ingest.sqlite"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def write_gateway_config(self) -> None:
        data_dir = self.workdir / "gateway"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.gateway_config.write_text(
            "\n".join(
                [
                    "[gateway]",
                    f'data_dir = "{data_dir}"',
                    "[mqtt]",
                    f"port = {self.mqtt_port}",
                    "[batch]",
                    f"interval_s = {self.batch_interval_s}",
                    f"max_bundles = {self.batch_max_bundles}",
                    "[devices]",
                    "expected_interval_s = 10",
                    "[uplink]",
                    'kind = "http"',
                    f'url = "http://127.0.0.1:{self.ingest_port}/v1/batches"',
                    "backoff_initial_s = 0.5",
                    "backoff_max_s = 10",
                    "[http]",
                    f'listen = "127.0.0.1:{self.http_port}"',
                    "[homeassistant]",
                    "enabled = true",
                    "[serial]",
                    f"ports = {json.dumps(self.serial_ports)}",
                    "reopen_s = 0.5",
                    *_toml_sections(self.extra_config),
                    "",
                ]
            )
        )

    def gateway_cli(self, *args: str) -> str:
        return run_tool(tool("pinseal-gateway"), *args, "--config", str(self.gateway_config))

    def ingest_cli(self, *args: str) -> str:
        return run_tool(tool("pinseal-ingest"), *args, "--db", str(self.ingest_db))

    def prepare(self) -> None:
        """Gateway key (once), config, and the gateway registered with the network ingest."""
        self.write_gateway_config()
        self.ingest_db.parent.mkdir(parents=True, exist_ok=True)
        key_file = self.workdir / "gateway" / "gateway.key"
        if not key_file.exists():
            self.gateway_cli("keygen")
        self.gateway_public_key = keys.public_key_bytes(load_gateway_key(key_file))
        registered = self.ingest_cli("gateways", "list") if self.ingest_db.exists() else ""
        if keys.key_id_hex(self.gateway_public_key) not in registered:
            self.ingest_cli("gateways", "add", self.gateway_public_key.hex(), "--label", "make-run")

    def register_device(self, public_key_hex: str, label: str, interval_s: int) -> str:
        """Register a device with the gateway (returns its MQTT password) and with the network ingest."""
        out = self.gateway_cli(
            "devices", "add", public_key_hex, "--label", label, "--interval", str(interval_s)
        )
        match = re.search(r"mqtt password: (\S+)", out)
        if match is None:
            raise RuntimeError(f"no password in: {out}")
        self.ingest_cli("devices", "add", public_key_hex)
        return match.group(1)

    def start(self) -> None:
        """Broker (config generated from the registry), ingest, gateway; each waits until it answers."""
        self.start_broker_only()
        self.start_ingest()
        self.start_gateway()

    @property
    def logs(self) -> Path:
        path = self.workdir / "logs"
        path.mkdir(exist_ok=True)
        return path

    def start_ingest(self) -> None:
        cmd = [
            tool("pinseal-ingest"),
            "run",
            "--db",
            str(self.ingest_db),
            "--listen",
            f"127.0.0.1:{self.ingest_port}",
        ]
        if self.ingest_max_body is not None:
            cmd += ["--max-body", str(self.ingest_max_body)]
        self._spawn("ingest", cmd, self.ingest_port)

    def start_gateway(self) -> None:
        """Start the gateway and wait until it is subscribed: a device's first bundles must not go to a
        broker with no subscriber yet (they would be dropped, as MQTT drops them, and never acked)."""
        self.write_gateway_config()  # serial ports known only once the boards run
        cmd = [tool("pinseal-gateway"), "run", "--config", str(self.gateway_config)]
        self._spawn("gateway", cmd, self.http_port, self.gateway_env)
        if not wait_until(self._gateway_subscribed, 20, 0.05):
            raise RuntimeError(f"gateway did not subscribe to the broker; see {self.logs / 'gateway.log'}")

    def gateway_metric(self, name: str) -> float:
        """The sum of a gateway metric's samples (all labels), read from its /metrics page."""
        with urllib.request.urlopen(f"{self.gateway_url}/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith((name + "{", name + " "))
        )

    def _gateway_subscribed(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.gateway_url}/metrics", timeout=2) as response:
                return b"pinseal_gateway_mqtt_subscribed 1.0" in response.read()
        except OSError:
            return False

    def start_broker_only(self, extra_users: Sequence[broker.BrokerUser] = ()) -> None:
        """Mosquitto with a config generated from the gateway's registry as it is now, plus `extra_users`
        (each client connected at the same time needs a login of its own: one login, one session)."""
        broker_dir = self.workdir / "broker"
        self.gateway_cli("broker-config", "--out", str(broker_dir))
        broker.add_users(broker_dir, extra_users)
        self.procs["mosquitto"] = broker.start_mosquitto(broker_dir, self.mqtt_port)

    def _spawn(self, name: str, cmd: list[str], port: int, env: dict[str, str] | None = None) -> None:
        log_path = self.logs / f"{name}.log"
        with log_path.open("ab") as log_file:
            self.procs[name] = subprocess.Popen(
                cmd,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        if not broker.wait_for_port("127.0.0.1", port, 20):
            raise RuntimeError(f"{name} did not start; see {log_path}")

    def exited(self) -> list[tuple[str, int]]:
        """Children that have stopped by themselves: (name, exit code); each is reported once."""
        gone = [(name, proc.returncode) for name, proc in self.procs.items() if proc.poll() is not None]
        for name, _ in gone:
            del self.procs[name]
        return gone

    def log_of(self, name: str) -> Path:
        return self.workdir / "broker" / "mosquitto.log" if name == "mosquitto" else self.logs / f"{name}.log"

    def gateway_status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.gateway_url}/status", timeout=5) as response:
            return json.loads(response.read())

    def ingest_stats(self) -> str:
        return self.ingest_cli("stats")

    def kill(self, name: str) -> int | None:
        """SIGKILL one process (a crash or a power cut, nothing flushed) and forget it; its exit status."""
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.kill()
        return proc.wait(10)

    def terminate(self, name: str, timeout_s: float = 15) -> int | None:
        """SIGTERM one process and wait for it (SIGKILL if it hangs); its exit status, None if it hung."""
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.terminate()
            try:
                return proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                return None
        return proc.returncode

    def stop(self, timeout_s: float = 15) -> None:
        """SIGTERM in reverse order of start (gateway first, so it drains cleanly), SIGKILL if one hangs."""
        for name in reversed(list(self.procs)):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _toml_sections(sections: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return lines


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
