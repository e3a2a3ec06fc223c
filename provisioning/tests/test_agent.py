"""The provisioning agent is a MicroPython file, checked like the firmware: it compiles with the boards'
mpy-cross and type-checks against each port's stubs (`make compile-firmware` / `make typecheck-firmware` run
the same checks). The vboard tests drive it on boards; these catch a mistake before a board is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pinseal_build import mpy, typecheck_firmware
from pinseal_provision import device

AGENT_FILE = Path(str(device.AGENT_SOURCE))


def test_the_agent_sent_to_boards_is_the_shipped_file() -> None:
    assert AGENT_FILE.parent.name == "agent" and AGENT_FILE.is_file()
    assert AGENT_FILE.read_text() == device.AGENT
    assert "def _ps_hashes(" in device.AGENT and "def _ps_commit(" in device.AGENT


def test_the_agent_compiles_with_the_boards_mpy_cross(tmp_path: Path) -> None:
    out = tmp_path / "provision_agent.mpy"
    mpy.compile_file(AGENT_FILE, out, AGENT_FILE.name)
    assert out.read_bytes()[:2] == bytes([ord("M"), mpy.MPY_VERSION])


@pytest.mark.parametrize("port", sorted(typecheck_firmware.PORT_STUBS))
def test_the_agent_type_checks_against_the_board_stubs(port: str) -> None:
    stubs = typecheck_firmware.ensure_stubs(port)
    diagnostics, files = typecheck_firmware.run_pyright(AGENT_FILE.parent, port, stubs)
    assert files == 1
    assert [d for d in diagnostics if d.severity == "error"] == []
