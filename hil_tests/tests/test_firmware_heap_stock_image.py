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
# Where the firmware stands today (issue 13 still open), with the RAM model's default 4 x RAM ceiling:
# 85,392 B measured (was 101,424 B before the cuts). A guard so that nothing grows it while the last
# ~1-3 KB and the lower ceiling are worked on.
INTERIM_PEAK_LIMIT_BYTES = 87_000


def board_ram() -> int:
    return int(load_profile(BOARD)["ram"]["free_heap_bytes"])


def run_stock_image_app(tmp_path: Path, ceiling_bytes: int | None) -> dict[str, Any]:
    spec = bench_app.RunSpec(
        "heap_mpy",
        BOARD,
        romfs=False,
        mpy=True,
        readings_per_bundle=16,
        speeds=(10.0,),
        step_s=15.0,
        ram_ceiling_bytes=ceiling_bytes,
        first_bundle_timeout_s=60.0,
    )
    return bench_app.run_app(spec, tmp_path / "heap")


def assert_clean_run(run: dict[str, Any]) -> None:
    assert run["board_ram_bytes"] == board_ram() == 100_000
    assert run["memory_errors"] == 0 and run["board_resets"] == 0, run
    assert run["ram_over_count"] == 0 and run["ram_rescues"] == 0, run
    assert run["rejections"] == {}, run
    assert run["bundles_stored"] >= 4, run  # several bundles sealed, sent, acked (the ack verified)


@pytest.mark.timeout(300)
@pytest.mark.xfail(
    strict=True,
    reason="issue 13 open: the peak is 85,392 B (4 x RAM ceiling), and with the ceiling at RAM + 16 KiB "
    "(also + 32 and + 64 KiB) the synchronous bundle preparation (16 readings read and CBOR-decoded twice "
    "in one task step) runs out of heap",
)
def test_whole_application_as_mpy_peaks_within_85_kb(tmp_path: Path) -> None:
    run = run_stock_image_app(tmp_path, board_ram() + CEILING_RESERVE_BYTES)
    assert_clean_run(run)
    assert run["peak_heap_bytes"] <= PEAK_LIMIT_BYTES, run


@pytest.mark.timeout(300)
def test_whole_application_as_mpy_runs_clean_within_the_interim_peak(tmp_path: Path) -> None:
    run = run_stock_image_app(tmp_path, None)
    assert_clean_run(run)
    assert run["peak_heap_bytes"] <= INTERIM_PEAK_LIMIT_BYTES, run
