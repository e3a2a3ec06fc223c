"""Issue 11's faults against a real stack, each ending in exact accounting (pinseal_hil.scenario).

Crashes land on deterministic points (pinseal_gateway.faults: the gateway holds before a COMMIT and the
test SIGKILLs it there), never on a timer. Device power cuts fall at seeded random points of the device's
own cycle (seal, outbox write, state write, publish, ack); the ≥ 200-cut fleet run is `make test-long`.
The disk-full scenario lives with the disk-full fix (a tmpfs inside `unshare -m`), not here.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from pinseal_hil.scenario import scenario, wait_for

pytestmark = [pytest.mark.broker]


@pytest.mark.parametrize(
    ("point", "variable"),
    [
        ("store_commit", "PINSEAL_FAULT_HOLD_BEFORE_COMMIT"),
        ("seal_commit", "PINSEAL_FAULT_HOLD_BEFORE_SEAL_COMMIT"),
    ],
)
def test_gateway_sigkill_before_commit_loses_and_duplicates_nothing(tmp_path, point, variable) -> None:
    held = tmp_path / f"held-{point}"
    with scenario(f"fault: SIGKILL at {point}", tmp_path, gateway_env={variable: str(held)}) as s:
        s.honest(4, bundles=25)
        s.start()
        wait_for(held.exists, f"the gateway to hold at {point}")
        if point == "store_commit":  # the held group was written but is not committed: not acked yet
            assert any(slot.device.unacked for slot in s.slots)
        s.restart_gateway(kill=True)  # same environment: the existing file disarms the point
        s.wait_produced()
        s.finish({})


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_broker_restart_mid_stream(tmp_path, how) -> None:
    with scenario(f"fault: broker {how}", tmp_path) as s:
        s.honest(4, bundles=30)
        fleet = s.start()
        wait_for(lambda: s.ledger.count() >= 30, "production under way")
        if how == "SIGKILL":
            s.stack.kill("mosquitto")
        else:
            s.stack.terminate("mosquitto")
        time.sleep(0.5)  # devices keep sampling into their outboxes meanwhile
        s.stack.start_broker_only()
        s.wait_produced()
        s.finish({}, settle_timeout_s=60)
        assert fleet.devices


def ingest_outage(tmp_path, devices: int, bundles: int, name: str) -> None:
    """The ingest down while one batch per bundle queues up (max_bundles = 1), then up: each batch once."""
    with scenario(name, tmp_path, batch_interval_s=0.2, batch_max_bundles=1) as s:
        s.honest(devices, bundles=bundles)
        s.start(period_s=0.02, fleet=False)
        s.stack.terminate("ingest")
        s.start_fleet()
        s.wait_produced(timeout_s=120)
        fleet = s.fleet
        assert fleet is not None
        wait_for(fleet.outboxes_empty, "every bundle acked by the gateway", 120)
        wait_for(lambda: s.stack.gateway_status()["counts"]["unbatched"] == 0, "every bundle sealed", 120)
        queued = s.stack.gateway_status()["outbox_depth"]
        started = time.monotonic()
        s.stack.start_ingest()
        r = s.finish({}, settle_timeout_s=180)
        r.notes["batches_queued"] = queued
        r.notes["drain_s"] = round(time.monotonic() - started, 1)
        assert queued == devices * bundles  # one batch per bundle, every one waited for the ingest


def test_ingest_down_while_two_thousand_batches_queue(tmp_path) -> None:
    ingest_outage(tmp_path, devices=10, bundles=200, name="fault: ingest down, 2k batches")


@pytest.mark.long
def test_ingest_down_while_ten_thousand_batches_queue(tmp_path) -> None:
    ingest_outage(tmp_path, devices=20, bundles=500, name="fault: ingest down, 10k batches")


def test_device_clocks_jumping_an_hour_either_way(tmp_path) -> None:
    with scenario("fault: device clock +/-1 h", tmp_path) as s:
        slots = s.honest(4, bundles=30)
        s.start()
        slots[0].device.clock_offset_s = 3600  # beyond max_future_s: stored, flagged "future"
        slots[1].device.clock_offset_s = -3600
        wait_for(lambda: all(slot.quota < 15 for slot in slots), "half the readings")
        slots[0].device.clock_offset_s = 0  # and back
        slots[1].device.clock_offset_s = 0
        s.wait_produced()
        r = s.finish({})
        with s.gateway_db() as db:
            (flagged,) = db.execute("SELECT count(*) FROM bundles WHERE time_flag = 'future'").fetchone()
        r.notes["flagged_future"] = flagged
        assert flagged > 0


def test_wifi_flapping(tmp_path) -> None:
    with scenario("fault: Wi-Fi flapping", tmp_path) as s:
        s.honest(6, bundles=50)
        fleet = s.start()
        fleet.flap_every_s = 0.1
        s.wait_produced(timeout_s=90)
        fleet.flap_every_s = 0.0
        r = s.finish({}, settle_timeout_s=90)
        assert r.notes["flaps"] >= 15


class CutPlan:
    """Seeded power-cut points: each check of a cut point fires with probability `p` until `cuts` fired."""

    def __init__(self, seed: int, p: float, cuts: int) -> None:
        self.rng = random.Random(seed)
        self.p = p
        self.left = cuts
        self.fired: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, point: str) -> bool:
        with self._lock:
            if self.left <= 0 or self.rng.random() >= self.p:
                return False
            self.left -= 1
            self.fired[point] = self.fired.get(point, 0) + 1
            return True


def power_cuts(tmp_path, devices: int, bundles: int, cuts: int, name: str) -> None:
    plan = CutPlan(seed=20261204, p=0.04, cuts=cuts)
    with scenario(name, tmp_path) as s:
        slots = s.honest(devices, bundles=bundles, on_disk=True)
        for slot in slots:
            slot.device.cut_at = plan
        fleet = s.start(resend_after_s=1.0)
        s.wait_produced(timeout_s=300)
        wait_for(lambda: plan.left <= 0, f"{cuts} power cuts", 120)
        r = s.finish({}, settle_timeout_s=120)
        r.notes["cut_points"] = ",".join(f"{k}:{v}" for k, v in sorted(plan.fired.items()))
        assert fleet.cuts >= cuts


def test_device_power_cuts_at_seeded_points(tmp_path) -> None:
    power_cuts(tmp_path, devices=4, bundles=80, cuts=20, name="fault: 20 power cuts")


@pytest.mark.long
def test_device_power_cuts_at_two_hundred_seeded_points_across_the_fleet(tmp_path) -> None:
    power_cuts(tmp_path, devices=20, bundles=150, cuts=240, name="fault: 240 power cuts")
