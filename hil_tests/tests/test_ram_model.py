"""The board RAM model of the virtual board (run_vm.mjs --ram, VMOptions.board()).

The MicroPython side lives in hil_tests/firmware_tests/test_ram_board.py (one pytest test a function, run in
board mode); the cases here need the host: timeouts, exit codes, tracebacks, the CLI.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import time
from pathlib import Path

import pytest

from pinseal_vboard.vm import (
    BOARD_RAM_BYTES,
    EXIT_TIMEOUT,
    FIRMWARE_TESTS_DIR,
    RUN_VM_JS,
    VMOptions,
    node_executable,
    run_code,
    run_firmware_test_module,
)

pytestmark = pytest.mark.vm

RAM_MODULE = "test_ram_board"


def _firmware_test_names() -> list[str]:
    tree = ast.parse((FIRMWARE_TESTS_DIR / f"{RAM_MODULE}.py").read_text())
    return sorted(
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    )


@pytest.mark.parametrize("name", _firmware_test_names())
def test_ram_model_in_board_mode(name: str) -> None:
    result = run_firmware_test_module(RAM_MODULE, name, VMOptions.board(timeout_s=120))
    assert f"PASS {name}" in result.stdout, result.output
    assert result.returncode == 0, result.output


def test_ram_tests_skip_outside_board_mode() -> None:
    result = run_firmware_test_module(RAM_MODULE, options=VMOptions(timeout_s=120))
    assert result.returncode == 0, result.output
    assert " 0 passed, 0 failed" in result.stdout, result.output


def test_board_mode_defaults_to_an_esp32_without_psram() -> None:
    result = run_code(
        "import vboard_ram\nprint('RAM', vboard_ram.ram(), vboard_ram.ceiling(), vboard_ram.live_method())\n",
        VMOptions.board(timeout_s=60),
    )
    assert result.returncode == 0, result.output
    # "fast": live bytes are read from the GC's allocation table (checked against gc.mem_alloc()).
    assert f"RAM {BOARD_RAM_BYTES} {4 * BOARD_RAM_BYTES} fast" in result.stdout, result.output


def test_outside_board_mode_the_heap_is_not_limited() -> None:
    code = "keep = [bytearray(1000) for _ in range(2000)]\nprint('held', len(keep))\n"
    result = run_code(code, VMOptions(heap_bytes=100_000, timeout_s=60))
    assert result.returncode == 0 and "held 2000" in result.stdout, result.output


def test_same_allocation_in_board_mode_is_a_memoryerror_with_traceback() -> None:
    code = "keep = [bytearray(1000) for _ in range(2000)]\nprint('held', len(keep))\n"
    result = run_code(code, VMOptions.board(timeout_s=60))
    assert result.returncode == 1, result.output
    assert "Traceback (most recent call last)" in result.stderr, result.output
    assert "MemoryError" in result.stderr, result.output
    assert "held" not in result.stdout


def test_uncaught_exception_in_a_task_is_reported_with_its_traceback() -> None:
    code = (
        "import asyncio\n"
        "async def sensor_loop():\n"
        "    await asyncio.sleep_ms(0)\n"
        "    raise ValueError('sensor gone')\n"
        "t = asyncio.create_task(sensor_loop())\n"
        "for _ in range(5):\n"
        "    await asyncio.sleep_ms(1)\n"
        "print('main still running')\n"
    )
    result = run_code(code, VMOptions.board(timeout_s=60))
    assert result.returncode == 0, result.output
    assert "main still running" in result.stdout
    assert "in sensor_loop" in result.stderr and "ValueError: sensor gone" in result.stderr, result.output


def test_system_exit_code_is_the_exit_status() -> None:
    result = run_code("print('bye')\nraise SystemExit(5)\n", VMOptions.board(timeout_s=60))
    assert result.returncode == 5 and "bye" in result.stdout, result.output


@pytest.mark.parametrize("board", [False, True], ids=["plain", "board"])
def test_sync_endless_loop_is_killed_by_the_watchdog(board: bool) -> None:
    code = "print('started')\nwhile True:\n    pass\n"
    options = VMOptions.board(timeout_s=4) if board else VMOptions(timeout_s=4)
    t0 = time.monotonic()
    result = run_code(code, options)
    elapsed = time.monotonic() - t0
    assert result.timed_out, result.output
    assert result.returncode == EXIT_TIMEOUT
    assert "TIMEOUT: killed the VM after 4 s" in result.stderr, result.output
    assert "started" in result.stdout  # output before the loop is kept
    assert elapsed < 30, elapsed  # the watchdog, not the host's fallback


def test_endless_loop_inside_an_asyncio_step_is_killed_too() -> None:
    code = (
        "import asyncio\n"
        "async def stuck():\n"
        "    await asyncio.sleep_ms(0)\n"
        "    while True:\n"
        "        pass\n"
        "await asyncio.create_task(stuck())\n"
    )
    result = run_code(code, VMOptions.board(timeout_s=4))
    assert result.timed_out, result.output
    assert "asyncio steps" in result.stderr, result.output


def test_top_level_awaiting_forever_is_reported() -> None:
    code = "import asyncio\nawait asyncio.Event().wait()\n"
    result = run_code(code, VMOptions.board(timeout_s=60))
    assert result.returncode == 13, result.output
    assert "top level never finished" in result.stderr, result.output


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node_executable(), str(RUN_VM_JS), *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ceiling", "400000", "x.py"], "--ceiling needs --ram"),
        (["--ram", "100000", "--ceiling", "50000", "x.py"], "--ceiling must be >= --ram"),
        (["--ram", "lots", "x.py"], "non-negative number"),
        (["--ram", "100000"], "no script given"),
    ],
)
def test_cli_rejects_bad_ram_options(args: list[str], message: str) -> None:
    result = _cli(*args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_cli_ceiling_option(tmp_path: Path) -> None:
    script = tmp_path / "ceiling.py"
    script.write_text(
        "import vboard_ram\n"
        "n = 0\n"
        "try:\n"
        "    keep = []\n"
        "    while True:\n"
        "        keep.append(bytearray(1000))\n"
        "except MemoryError:\n"
        "    n = len(keep)\n"
        "    keep = None\n"
        "print('ceiling', vboard_ram.ceiling(), 'stopped at', n)\n"
    )
    result = _cli("--ram", "50000", "--ceiling", "120000", "--timeout", "60", str(script))
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert words[1] == "120000", result.stdout
    assert 50 < int(words[-1]) <= 120, result.stdout


# A MemoryError at the hard ceiling must never wedge the VM. Garbage made of small objects (big-integer
# temporaries) fills the heap to the last block; before the rescue reserve, leaving such a step needed memory
# that was not there and MicroPython ended in nlr_jump_fail(), an endless loop (the watchdog's TIMEOUT).
_BURN = (
    "def burn():\n"  # big-integer garbage, no yield: one step
    "    x = 3\n"
    "    while True:\n"
    "        x = (x * x + 12345678901234567890) % (2**255 - 19)\n"
)
_FILL = (
    "def burn():\n"  # 1 KB buffers kept until the MemoryError
    "    junk = []\n"
    "    while True:\n"
    "        junk.append(bytearray(1000))\n"
)


@pytest.mark.parametrize("garbage", [_BURN, _FILL], ids=["bigint-garbage", "bytearrays"])
def test_memoryerror_at_the_ceiling_caught_in_a_task_then_await_and_finish(garbage: str) -> None:
    code = (
        "import asyncio\n" + garbage + "async def main():\n"
        "    try:\n"
        "        burn()\n"
        "    except MemoryError as e:\n"
        "        print('MemoryError', e)\n"
        "    print('after')\n"
        "    await asyncio.sleep_ms(0)\n"
        "    print('after sleep')\n"
        "    return 7\n"
        "t = asyncio.create_task(main())\n"
        "print('result', await t)\n"
        "print('slept', t.done())\n"
    )
    result = run_code(code, VMOptions.board(timeout_s=60))
    assert not result.timed_out, result.output
    assert result.returncode == 0, result.output
    lines = [line.split()[0] for line in result.stdout.splitlines()]
    assert lines == ["MemoryError", "after", "after", "result", "slept"], result.stdout
    assert "result 7" in result.stdout and "slept True" in result.stdout, result.stdout


def test_uncaught_ceiling_memoryerror_in_a_task_then_another_task_runs() -> None:
    code = (
        "import asyncio, vboard_ram\n" + _BURN + "async def runaway():\n"
        "    burn()\n"
        "async def healthy(n):\n"
        "    total = 0\n"
        "    for _ in range(n):\n"
        "        total += len(bytearray(2000))\n"
        "        await asyncio.sleep_ms(1)\n"
        "    return total\n"
        "t = asyncio.create_task(runaway())\n"
        "for _ in range(5):\n"
        "    await asyncio.sleep_ms(1)\n"
        "print('runaway done', t.done())\n"
        "print('healthy', await asyncio.create_task(healthy(10)))\n"
        "print('live under RAM', vboard_ram.live() < vboard_ram.ram())\n"
    )
    result = run_code(code, VMOptions.board(timeout_s=60))
    assert not result.timed_out, result.output
    assert result.returncode == 0, result.output
    assert "runaway done True" in result.stdout, result.output
    assert "healthy 20000" in result.stdout, result.output
    assert "live under RAM True" in result.stdout, result.output
    # The task's own traceback, as for any uncaught task exception.
    assert "in runaway" in result.stderr and "in burn" in result.stderr, result.output
    assert "MemoryError" in result.stderr, result.output


def test_two_runaways_in_a_row_are_both_stopped_at_the_ceiling() -> None:
    code = (
        "import asyncio, vboard_ram\n" + _BURN + "def fill():\n"
        "    chunks = []\n"
        "    try:\n"
        "        while True:\n"
        "            chunks.append(bytearray(1000))\n"
        "    except MemoryError:\n"
        "        return len(chunks)\n"
        "async def task(fn):\n"
        "    try:\n"
        "        return fn()\n"
        "    except MemoryError:\n"
        "        return 'MemoryError'\n"
        "for fn in (burn, burn, fill, fill):\n"
        "    print('got', await asyncio.create_task(task(fn)), vboard_ram.rescues())\n"
        "    await asyncio.sleep_ms(0)\n"
        "# two more within one step (no return to JS in between):\n"
        "# the second gets what is left of the reserve\n"
        "caught = 0\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        burn()\n"
        "    except MemoryError:\n"
        "        caught += 1\n"
        "print('same step', caught)\n"
        "await asyncio.sleep_ms(0)\n"
        "print('live under RAM', vboard_ram.live() < vboard_ram.ram())\n"
    )
    result = run_code(code, VMOptions.board(timeout_s=60))
    assert not result.timed_out, result.output
    assert result.returncode == 0, result.output
    got = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("got ")]
    assert [g[0] for g in got[:2]] == ["MemoryError", "MemoryError"], result.stdout
    n1, n2 = int(got[2][0]), int(got[3][0])
    # Each fill is stopped by the 400 KB ceiling, the second at the same place as the first.
    assert BOARD_RAM_BYTES // 1000 < n1 <= 4 * BOARD_RAM_BYTES // 1000, result.stdout
    assert abs(n2 - n1) <= 8, result.stdout
    # The rescue reserve was released at each runaway (and re-armed in between).
    rescues = [int(g[1]) for g in got]
    assert rescues[0] >= 1 and all(b > a for a, b in itertools.pairwise(rescues)), got
    assert "same step 2" in result.stdout, result.output
    assert "live under RAM True" in result.stdout, result.output


def test_signing_key_built_in_one_step_in_board_mode_never_wedges() -> None:
    # The original trigger: the one-time table build makes more big-integer garbage in one step than the
    # ceiling. Whether it fits or raises MemoryError, the board must carry on.
    code = (
        "import asyncio\n"
        "from pinseal.crypto import ed25519\n"
        "async def keygen():\n"
        "    try:\n"
        "        ed25519.SigningKey(bytes(32))\n"
        "        return 'key'\n"
        "    except MemoryError:\n"
        "        return 'MemoryError'\n"
        "async def after():\n"
        "    await asyncio.sleep_ms(0)\n"
        "    return 'next task ran'\n"
        "print(await asyncio.create_task(keygen()))\n"
        "print(await asyncio.create_task(after()))\n"
    )
    result = run_code(code, VMOptions.board(timeout_s=60))
    assert not result.timed_out, result.output
    assert result.returncode == 0, result.output
    assert "next task ran" in result.stdout, result.output
