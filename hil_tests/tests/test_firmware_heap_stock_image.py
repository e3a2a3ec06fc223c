"""The firmware fits an official MicroPython image (issue 13): esp32_devkitc, 100,000 B of heap, the
package as .mpy files on the filesystem (what `pinseal-provision deploy` puts on a board without a ROMFS
partition), the whole application (N = 16, MQTT, sealing, ack verification) against the real local stack.

The RAM model holds live bytes to the board's RAM, and its hard ceiling is the board's RAM plus 16 KiB
instead of the default 4 x RAM, so that no task step (an import, a hash slice, a comb column) can hide a
burst of garbage the VM would only collect after it. The peak must stay at or below 85,000 B, the rest of
the board's heap being left for fragmentation, which this model does not count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pinseal_bench import firmware_app as bench_app
from pinseal_vboard import load_profile

pytestmark = [pytest.mark.vm, pytest.mark.broker]

BOARD = "esp32_devkitc"
PEAK_LIMIT_BYTES = 85_000
CEILING_RESERVE_BYTES = 16 * 1024
# Code that runs once a boot (config checking, the key files, outbox recovery, building the app) is imported,
# run and forgotten: on a stock image each of these modules is heap the run would hold for nothing.
SETUP_ONLY_MODULES = {
    "pinseal.config",
    "pinseal.board",
    "pinseal.identity",
    "pinseal.outbox_recovery",
    "pinseal.startup",
    "pinseal.enroll",
}


def board_ram() -> int:
    return int(load_profile(BOARD)["ram"]["free_heap_bytes"])


def run_stock_image_app(tmp_path: Path, ceiling_bytes: int | None, transport: str = "mqtt") -> dict[str, Any]:
    spec = bench_app.RunSpec(
        f"heap_mpy_{transport}",
        BOARD,
        romfs=False,
        mpy=True,
        readings_per_bundle=16,
        speeds=(10.0,),
        step_s=15.0,
        ram_ceiling_bytes=ceiling_bytes,
        first_bundle_timeout_s=90.0,
        transport=transport,
    )
    return bench_app.run_app(spec, tmp_path / f"heap-{transport}")


@pytest.mark.timeout(300)
def test_whole_application_as_mpy_peaks_within_85_kb(tmp_path: Path) -> None:
    run = run_stock_image_app(tmp_path, board_ram() + CEILING_RESERVE_BYTES)
    assert run["board_ram_bytes"] == board_ram() == 100_000
    assert run["memory_errors"] == 0 and run["board_resets"] == 0, run
    assert run["ram_over_count"] == 0 and run["ram_rescues"] == 0, run
    assert run["rejections"] == {}, run
    assert run["bundles_stored"] >= 4, run  # several bundles sealed, sent, acked (the ack verified)
    assert run["peak_heap_bytes"] <= PEAK_LIMIT_BYTES, run
    loaded = set(run["firmware_modules_loaded"])
    assert "pinseal.app" in loaded and "pinseal.crypto.ed25519" in loaded, loaded  # the readout works
    assert not loaded & SETUP_ONLY_MODULES, loaded & SETUP_ONLY_MODULES


@pytest.mark.timeout(300)
def test_with_ble_as_its_link_the_application_still_peaks_within_85_kb(tmp_path: Path) -> None:
    """Issue 15: BLE instead of MQTT (the transport, its codec, the stack's IRQs and the chunked sends)
    on the same stock image and heap, against the gateway's bleak intake through BlueZoo."""
    run = run_stock_image_app(tmp_path, board_ram() + CEILING_RESERVE_BYTES, transport="ble")
    assert run["memory_errors"] == 0 and run["board_resets"] == 0, run
    assert run["ram_over_count"] == 0 and run["ram_rescues"] == 0, run
    assert run["bundles_stored"] >= 4, run
    assert run["peak_heap_bytes"] <= PEAK_LIMIT_BYTES, run
    loaded = set(run["firmware_modules_loaded"])
    assert "pinseal.transport.ble" in loaded and "pinseal.transport.mqtt" not in loaded, loaded
