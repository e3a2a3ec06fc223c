"""Bridge: every hil_tests/firmware_tests/test_*.py module runs inside the MicroPython VM.

Each MicroPython test module is one pytest test; its per-function PASS/FAIL lines are in the output.
"""

from __future__ import annotations

import pytest

from pinseal_vboard.vm import FIRMWARE_TESTS_DIR, run_firmware_test_module

# test_ram_board needs board mode and runs, one test a function, from test_ram_model.py; here every test
# of it would only skip.
BOARD_MODE_MODULES = {"test_ram_board", "test_net_board", "test_mqtt_packets", "test_mqtt_client"}
MODULES = sorted(
    p.stem
    for p in FIRMWARE_TESTS_DIR.glob("test_*.py")
    if p.stem not in BOARD_MODE_MODULES and not p.stem.startswith("test_sensors")  # test_sensors_in_vm.py
)


@pytest.mark.vm
@pytest.mark.parametrize("module", MODULES)
def test_firmware_module_in_micropython(module: str) -> None:
    result = run_firmware_test_module(module)
    summary = [line for line in result.stdout.splitlines() if line.startswith("mptest:")]
    assert summary, f"no summary from the VM:\n{result.output}"
    assert result.returncode == 0 and " 0 failed" in summary[-1], result.output
