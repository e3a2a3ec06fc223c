"""A tiny run of the application measurements of `make bench-firmware` (pinseal_bench.firmware_app):
one board with the firmware in ROMFS against the local stack, two short speed steps, the heap read over the
REPL, and the amplification from the outbox bench. Figures are checked for shape and sanity, not targets
(those are the benchmark's: docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinseal_bench import firmware_app as bench_app

pytestmark = [pytest.mark.vm, pytest.mark.broker]  # ~20 s


def test_app_run_counts_readings_and_reads_the_heap(tmp_path: Path) -> None:
    spec = bench_app.RunSpec("tiny", readings_per_bundle=4, speeds=(4.0, 8.0), settle_s=1.0, step_s=4.0)
    run = bench_app.run_app(spec, tmp_path / "tiny")
    assert run["board_resets"] == 0, run
    assert run["rejections"] == {}, run
    assert 1 <= len(run["steps"]) <= 2
    assert run["readings_per_s"] > 0
    assert run["bundles_stored"] >= 2 and run["readings_stored"] >= 2 * 4
    # live bytes above the emulation's baseline: the app's own, within the board's RAM
    assert 0 < run["live_heap_bytes_at_repl"] <= run["peak_heap_bytes"] <= run["board_ram_bytes"]


def test_import_heap_romfs(tmp_path: Path) -> None:
    romfs = bench_app.import_heap("esp32_devkitc", True, tmp_path / "romfs")
    assert 0 < romfs < 100_000


def test_outbox_amplification_merges() -> None:
    amp = bench_app.outbox_amplification(64)
    assert amp["readings_per_bundle"] == 16
    assert amp["flash_write_amplification"] > 1
    assert amp["outbox_bytes_per_reading"] > 0
