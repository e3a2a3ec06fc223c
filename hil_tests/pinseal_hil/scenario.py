"""The hardening suite's scenario harness: a real stack, a fleet of honest devices, exact accounting.

A scenario is set up as an operator would (pinseal_devkit.stack: generated Mosquitto config, `pinseal-ingest
run`, `pinseal-gateway run`, all real processes on loopback), registers its devices, then runs honest
devices (pinseal_devkit.simdevice: each bundle kept until a verified ack, resent until then) while the test
attacks or breaks something. `finish` then stops production, lets every outbox empty and the gateway's
uplink drain, and compares, reading by reading and value by value, what the devices produced with what the
network ingest stored: lost, duplicated, altered and unexpected must all be 0, and every gateway rejection is
counted by reason (its `rejections` table plus what its rejection budget only tallied and, while the
gateway was not restarted, its metrics). Each result goes to pinseal_hil.scenario_report.RESULTS, the rows
of the one-screen summary hil_tests/conftest.py prints.
"""

from __future__ import annotations

import queue
import random
import re
import sqlite3
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pinseal_devkit.simdevice import PowerCut, ReadingValues, SimDevice, reading_values
from pinseal_devkit.stack import Stack, wait_until
from pinseal_hil.scenario_report import RESULTS, ScenarioResult
from pinseal_protocol import bundle as pbundle
from pinseal_protocol import keys

REJECTED_METRIC = re.compile(r'^pinseal_gateway_rejected_total\{reason="([a-z_]+)"\} ([0-9.e+]+)$', re.M)


@dataclass
class Slot:
    """A device's identity and flash; `device` is the device as it runs now (a new one after a power cut)."""

    key: Ed25519PrivateKey
    password: str
    device: SimDevice
    outbox_dir: Path | None
    quota: int = 0  # bundles this device still has to produce
    next_due: float = 0.0  # when it samples next (time.monotonic)
    reboots: int = 0


class Ledger:
    """What every device produced: key id -> reading seq -> the reading's values. Thread-safe."""

    def __init__(self) -> None:
        self.produced: dict[bytes, dict[int, ReadingValues]] = {}
        self.public_keys: dict[bytes, Ed25519PublicKey] = {}
        self._lock = threading.Lock()

    def track(self, device: SimDevice) -> None:
        with self._lock:
            self.public_keys[device.kid] = device.key.public_key()
            self.produced.setdefault(device.kid, {})
        device.on_produced = self.record

    def record(self, device: SimDevice, seq: int, values: ReadingValues) -> None:
        with self._lock:
            self.produced[device.kid][seq] = values

    def record_bundle(self, raw: bytes, public_key: Ed25519PublicKey) -> None:
        """A bundle a test built by hand that the network must store (e.g. an attacker's valid one)."""
        b = pbundle.verify_bundle(raw, public_key)
        with self._lock:
            self.public_keys[b.kid] = public_key
            per = self.produced.setdefault(b.kid, {})
            for i, reading in enumerate(b.readings):
                per[b.seq + i] = reading_values(reading)

    def count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self.produced.values())


TICK_S = 0.005
"""How often the fleet thread looks at each device: an ack lets the next bundle go within a tick."""


class Fleet:
    """Honest devices driven by one thread: each seals a bundle every `period_s` until its quota is met,
    sends its outbox stop-and-wait as the firmware does, and is rebooted from its flash when a power cut
    hits it."""

    def __init__(self, scenario: Scenario, slots: list[Slot], period_s: float, resend_after_s: float) -> None:
        self.scenario = scenario
        self.slots = slots
        self.period_s = period_s
        self.resend_after_s = resend_after_s
        self.producing = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.flap_every_s: float = 0.0
        self.flaps = 0
        self.cuts = 0
        self.rng = random.Random(11)
        self.errors: list[BaseException] = []

    @property
    def devices(self) -> list[SimDevice]:
        return [s.device for s in self.slots]

    def start(self) -> None:
        for slot in self.slots:
            slot.device.connect("127.0.0.1", self.scenario.stack.mqtt_port)
        self.producing.set()
        self._thread = threading.Thread(target=self._run, name="pinseal-fleet", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_flap = time.monotonic() + self.flap_every_s
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                for slot in self.slots:
                    self._step(slot, started)
                if self.flap_every_s and started >= next_flap:
                    self.rng.choice(self.slots).device.cut_connection()
                    self.flaps += 1
                    next_flap = started + self.flap_every_s
            except BaseException as exc:  # the test reports it instead of hanging on an empty outbox
                self.errors.append(exc)
                return
            self._stop.wait(max(0.0, TICK_S - (time.monotonic() - started)))

    def _step(self, slot: Slot, now: float) -> None:
        device = slot.device
        try:
            if device.dead:
                raise PowerCut("ack")
            if self.producing.is_set() and slot.quota > 0 and now >= slot.next_due:
                slot.next_due = max(slot.next_due + self.period_s, now - self.period_s)
                device.seal_next()
                slot.quota -= 1
            device.pump(self.resend_after_s)
        except PowerCut:
            self._reboot(slot)

    def _reboot(self, slot: Slot) -> None:
        """Power back: a new device object from the flash only (nothing of the old one's RAM)."""
        slot.device.power_off()
        assert slot.outbox_dir is not None, "power cuts need an on-disk outbox"
        device = SimDevice.restore(slot.key, slot.password, slot.device.gateway_public_key, slot.outbox_dir)
        device.cut_at = slot.device.cut_at
        device.ack_latencies = slot.device.ack_latencies  # the test's view, not the device's
        self.scenario.ledger.track(device)
        slot.device = device
        slot.reboots += 1
        self.cuts += 1
        device.connect("127.0.0.1", self.scenario.stack.mqtt_port)

    def stop_producing(self) -> None:
        self.producing.clear()

    def quotas_met(self) -> bool:
        return all(s.quota <= 0 for s in self.slots)

    def outboxes_empty(self) -> bool:
        return all(not s.device.outbox and not s.device.dead for s in self.slots)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for slot in self.slots:  # all DISCONNECTs out before waiting for any loop thread
            if slot.device.client is not None:
                slot.device.client.disconnect()
        for slot in self.slots:
            slot.device.close()


class Scenario:
    """One stack, its devices and its accounting. Register every device before `start` (the broker's
    password file and ACL are generated from the registry when it starts)."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        *,
        batch_interval_s: float = 0.5,
        batch_max_bundles: int = 1000,
        gateway_env: dict[str, str] | None = None,
        ingest_max_body: int | None = None,
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.stack = Stack(
            workdir / "stack",
            batch_interval_s=batch_interval_s,
            batch_max_bundles=batch_max_bundles,
            gateway_env=dict(gateway_env or {}),
            ingest_max_body=ingest_max_body,
        )
        self.ledger = Ledger()
        self.slots: list[Slot] = []
        self.extra: list[SimDevice] = []
        self.fleet: Fleet | None = None
        self.gateway_restarts = 0
        self.started = time.monotonic()
        self.result = ScenarioResult(name)
        self.stack.prepare()
        self.gateway_public = keys.load_public_key(self.stack.gateway_public_key)

    # -- devices ------------------------------------------------------------------------------------

    def new_device(
        self, label: str, *, per_bundle: int = 1, on_disk: bool = False, at_ingest: bool = True
    ) -> tuple[SimDevice, Ed25519PrivateKey, str]:
        """A registered device (with the gateway and, unless `at_ingest` is False, the network ingest)."""
        key = Ed25519PrivateKey.generate()
        public_hex = keys.public_key_bytes(key.public_key()).hex()
        if at_ingest:
            password = self.stack.register_device(public_hex, label, 10)
        else:
            out = self.stack.gateway_cli("devices", "add", public_hex, "--label", label, "--interval", "10")
            match = re.search(r"mqtt password: (\S+)", out)
            assert match is not None, out
            password = match.group(1)
        outbox_dir = self.workdir / "devices" / keys.key_id(key.public_key()).hex() if on_disk else None
        device = SimDevice(key, password, self.gateway_public, per_bundle=per_bundle, outbox_dir=outbox_dir)
        return device, key, password

    def honest(self, n: int, *, bundles: int, per_bundle: int = 1, on_disk: bool = False) -> list[Slot]:
        """`n` honest devices, each to produce `bundles` bundles once the fleet runs."""
        for i in range(n):
            device, key, password = self.new_device(f"honest-{i}", per_bundle=per_bundle, on_disk=on_disk)
            self.ledger.track(device)
            self.slots.append(Slot(key, password, device, device.outbox_dir, quota=bundles))
        return self.slots[-n:]

    def attacker(self, label: str = "mallory", **kwargs: Any) -> SimDevice:
        """A registered device the test drives by hand (connected at `start`); untracked until it
        produces something the network must store (`ledger.record_bundle`)."""
        device, _, _ = self.new_device(label, **kwargs)
        self.extra.append(device)
        return device

    def send(self, device: SimDevice, payload: bytes, topic: str | None = None) -> None:
        """Publish as `device` (QoS 1, waiting for the broker's PUBACK): the broker, not the test, decides
        what reaches the gateway."""
        assert device.client is not None
        info = device.client.publish(topic or f"pinseal/v1/{device.kid_hex}/up", payload, qos=1)
        info.wait_for_publish(10)

    def send_and_wait_ack(self, device: SimDevice, payload: bytes, timeout_s: float = 10) -> None:
        """Publish a bundle the gateway must accept (or re-ack) and wait for its verified ack."""
        wanted = pbundle.bundle_hash(payload)
        self.send(device, payload)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                event = device.acks.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event.bundle_hash == wanted:
                return
        raise AssertionError(f"{self.name}: no verified ack for {wanted.hex()[:16]} in {timeout_s} s")

    def wait_rejections(self, total: int, timeout_s: float = 20) -> None:
        """Until the gateway has recorded `total` rejections (attacks are asynchronous to the fleet)."""
        wait_for(lambda: sum(self.gateway_rejections().values()) >= total, f"{total} rejections", timeout_s)

    # -- running ------------------------------------------------------------------------------------

    def start(self, *, period_s: float = 0.05, resend_after_s: float = 2.0, fleet: bool = True) -> Fleet:
        """Broker, ingest and gateway up; attackers connected; the honest fleet producing (or, with
        `fleet=False`, ready for `start_fleet` once the test has broken what it wants broken)."""
        self.stack.start()
        for device in self.extra:
            device.connect("127.0.0.1", self.stack.mqtt_port)
        wait_until(lambda: all(d.connected for d in self.extra), 10, 0.02)
        self.fleet = Fleet(self, self.slots, period_s, resend_after_s)
        if fleet:
            self.fleet.start()
        return self.fleet

    def start_fleet(self) -> None:
        assert self.fleet is not None, "start() first"
        self.fleet.start()

    def restart_gateway(self, *, kill: bool = True, env: dict[str, str] | None = None) -> None:
        """SIGKILL (or SIGTERM) the gateway and start it again, with `env` replacing its fault points."""
        if kill:
            self.stack.kill("gateway")
        else:
            self.stack.terminate("gateway")
        if env is not None:
            self.stack.gateway_env = env
        self.gateway_restarts += 1
        self.stack.start_gateway()

    def wait_produced(self, timeout_s: float = 60) -> None:
        fleet = self.fleet
        assert fleet is not None
        if not wait_until(lambda: fleet.quotas_met() or bool(fleet.errors), timeout_s, 0.05):
            raise AssertionError(f"{self.name}: the fleet did not produce its quota in {timeout_s} s")
        self._raise_fleet_errors()

    def _raise_fleet_errors(self) -> None:
        if self.fleet is not None and self.fleet.errors:
            raise AssertionError(f"{self.name}: the fleet thread failed") from self.fleet.errors[0]

    def gateway_db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.stack.workdir / "gateway" / "gateway.sqlite", timeout=30)

    def gateway_rejections(self) -> dict[str, int]:
        """Every rejection the gateway made, by reason: the rows it stored plus those its rejection budget
        and retention only tallied (`rejections_unstored`: stored plus tallied is every rejection)."""
        with self.gateway_db() as db:
            counts = Counter(dict(db.execute("SELECT reason, count(*) FROM rejections GROUP BY reason")))
            for reason, n in db.execute("SELECT reason, sum(n) FROM rejections_unstored GROUP BY reason"):
                counts[reason] += n
        return dict(counts)

    def gateway_metric_rejections(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.stack.gateway_url}/metrics", timeout=5) as response:
            text = response.read().decode()
        return {reason: int(float(v)) for reason, v in REJECTED_METRIC.findall(text) if float(v)}

    def gateway_metric(self, name: str) -> float:
        with urllib.request.urlopen(f"{self.stack.gateway_url}/metrics", timeout=5) as response:
            text = response.read().decode()
        match = re.search(rf"^pinseal_gateway_{name} ([0-9.e+]+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    def uplink_drained(self) -> bool:
        status = self.stack.gateway_status()
        return status["counts"]["unbatched"] == 0 and status["outbox_depth"] == 0

    def settle(self, timeout_s: float = 60) -> None:
        """Production stopped, every device outbox empty (acked), every bundle sealed and delivered."""
        fleet = self.fleet
        assert fleet is not None
        fleet.stop_producing()
        if not wait_until(lambda: fleet.outboxes_empty() or bool(fleet.errors), timeout_s, 0.05):
            waiting = {s.device.kid_hex[:8]: len(s.device.outbox) for s in fleet.slots if s.device.outbox}
            raise AssertionError(f"{self.name}: unacked bundles left in device outboxes: {waiting}")
        self._raise_fleet_errors()
        if not wait_until(self.uplink_drained, timeout_s, 0.1):
            status = self.stack.gateway_status()
            left = f"{status['counts']}, outbox {status['outbox_depth']}"
            raise AssertionError(f"{self.name}: gateway uplink not drained: {left}")

    def finish(
        self, expected_rejections: dict[str, int] | None = None, settle_timeout_s: float = 60
    ) -> ScenarioResult:
        """Settle, then account from each reading's value to the ingest's store; raises if not exact."""
        if expected_rejections:
            self.wait_rejections(sum(expected_rejections.values()))
        self.settle(settle_timeout_s)
        result = self.account()
        if expected_rejections is not None:
            assert result.rejected == expected_rejections, (result.rejected, expected_rejections)
            if self.gateway_restarts == 0:  # metrics restart from zero with the process
                assert self.gateway_metric_rejections() == expected_rejections
        assert result.exact, result
        return result

    def account(self) -> ScenarioResult:
        """The accounting, recorded in RESULTS whatever it shows."""
        r = self.result
        produced = {
            (kid, seq): values for kid, per in self.ledger.produced.items() for seq, values in per.items()
        }
        stored: Counter[tuple[bytes, int]] = Counter()
        values_at_ingest: dict[tuple[bytes, int], ReadingValues] = {}
        with sqlite3.connect(self.stack.ingest_db, timeout=30) as ingest:
            rows = ingest.execute("SELECT kid, raw FROM bundles").fetchall()
        for kid, raw in rows:
            public_key = self.ledger.public_keys.get(kid)
            if public_key is None:
                r.unexpected += 1
                continue
            b = pbundle.verify_bundle(raw, public_key)  # the ingest's copy, checked once more
            for i, reading in enumerate(b.readings):
                stored[(kid, b.seq + i)] += 1
                values_at_ingest[(kid, b.seq + i)] = reading_values(reading)
        r.produced = len(produced)
        r.stored_at_ingest = sum(stored.values())
        r.lost = sum(1 for k in produced if k not in stored)
        r.duplicated = sum(n - 1 for n in stored.values() if n > 1)
        r.altered = sum(1 for k, v in produced.items() if k in values_at_ingest and values_at_ingest[k] != v)
        r.unexpected += sum(1 for k in stored if k not in produced)
        r.rejected = self.gateway_rejections()
        with self.gateway_db() as db:
            (r.accepted_bundles,) = db.execute("SELECT count(*) FROM bundles").fetchone()
        latencies = [x for s in self.slots for x in s.device.ack_latencies]
        r.worst_ack_latency_s = max(latencies, default=0.0)
        if self.fleet is not None:
            if self.fleet.flaps:
                r.notes["flaps"] = self.fleet.flaps
            if self.fleet.cuts:
                r.notes["power_cuts"] = self.fleet.cuts
        if self.gateway_restarts:
            r.notes["gateway_restarts"] = self.gateway_restarts
        r.wall_s = time.monotonic() - self.started
        if r not in RESULTS:
            RESULTS.append(r)
        return r

    def close(self) -> None:
        if self.fleet is not None:
            self.fleet.stop()
        for device in self.extra:
            device.close()
        self.stack.stop(timeout_s=3)  # a stalled gateway (issue 11 #1) is SIGKILLed after this


@contextmanager
def scenario(name: str, workdir: Path, **kwargs: Any) -> Iterator[Scenario]:
    """A Scenario that always stops its processes; a failed one still shows in the summary."""
    s = Scenario(name, workdir, **kwargs)
    try:
        yield s
    finally:
        try:
            if s.result not in RESULTS and s.fleet is not None:
                s.result.notes["failed"] = "yes"
                try:
                    s.account()
                except Exception as exc:  # the accounting of a broken stack: show what we can
                    s.result.notes["account_error"] = type(exc).__name__
                    RESULTS.append(s.result)
        finally:
            s.close()


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    if not wait_until(predicate, timeout_s, 0.05):
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
