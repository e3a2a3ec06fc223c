"""The virtual board as the official tools and a power supply see it: REPL, flash, resets, clock, RAM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinseal_vboard import BoardHost, BoardOptions, VirtualBoard, mpremote
from pinseal_vboard.board import RAW_PROMPT

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def host() -> Iterator[BoardHost]:
    with BoardHost() as h:
        yield h


def make_board(host: BoardHost, tmp_path: Path, main_py: str | None = None, **kwargs: object) -> VirtualBoard:
    flash = tmp_path / "flash"
    flash.mkdir(exist_ok=True)
    if main_py is not None:
        (flash / "main.py").write_text(main_py)
    return VirtualBoard(BoardOptions(flash_dir=flash, firmware=None, **kwargs), host=host)  # type: ignore[arg-type]


@pytest.fixture
def board(host: BoardHost, tmp_path: Path) -> Iterator[VirtualBoard]:
    b = make_board(host, tmp_path).start()
    b.wait_for_output(b">>> ")
    yield b
    b.stop()


def test_mpremote_exec_ls_cp_and_soft_reset(board: VirtualBoard, tmp_path: Path) -> None:
    port = board.serial_path
    result = mpremote(port, "exec", "print('sum', sum(range(10)))")
    assert result.returncode == 0 and "sum 45" in result.stdout, result

    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(3000))
    result = mpremote(port, "fs", "cp", str(payload), ":data.bin", "+", "fs", "ls")
    assert result.returncode == 0, result
    assert "3000 data.bin" in result.stdout
    # Written through to the host folder that is the board's flash, byte for byte.
    assert (board.flash_dir / "data.bin").read_bytes() == payload.read_bytes()
    back = tmp_path / "back.bin"
    assert mpremote(port, "fs", "cp", ":data.bin", str(back)).returncode == 0
    assert back.read_bytes() == payload.read_bytes()

    missing = mpremote(port, "fs", "cat", "nothere")
    assert missing.returncode != 0 and "No such file" in missing.stdout + missing.stderr

    boots = board.boots
    result = mpremote(port, "soft-reset", "+", "exec", "import os; print(sorted(os.listdir('/')))")
    assert result.returncode == 0, result
    assert "['data.bin']" in result.stdout
    assert board.boots == boots + 1


def test_friendly_repl_and_raw_paste_by_hand(board: VirtualBoard) -> None:
    at = board.mark()
    board.write(b"x = 6 * 7\rx\r")
    board.wait_for_output(rb"\r\n42\r\n>>> ", after=at)
    at = board.mark()
    board.write(b"\r\x01")
    board.wait_for_output(RAW_PROMPT, after=at)
    at = board.mark()
    board.write(b"\x05A\x01")
    board.wait_for_output(b"R\x01\x00\x01", after=at)
    board.write(b"print('pasted', x)\x04")
    board.wait_for_output(b"\x04pasted 42\r\n\x04\x04>", after=at)
    at = board.mark()
    board.write(b"1/0\x04")
    board.wait_for_output(rb"OK\x04Traceback[^\x04]*ZeroDivisionError[^\x04]*\x04>", after=at)


def test_ctrl_a_in_the_raw_repl_resets_it_as_micropython_does(board: VirtualBoard) -> None:
    """A tool sends "Ctrl-C, Ctrl-A" until the raw banner comes back; the ones that arrive after it is in
    must drop the line so far and print the banner again, not become source (they did: the next Ctrl-D ran
    "\r\r\x01..." as code and later Ctrl-As got no answer at all)."""
    at = board.mark()
    board.write(b"\r\x01")
    board.wait_for_output(RAW_PROMPT, after=at)
    at = board.mark()
    board.write(b"print('dropped')\r\x01")
    board.wait_for_output(RAW_PROMPT, after=at)
    board.write(b"print('kept')\x04")
    out = board.wait_for_output(rb"OK[^>]*\x04[^>]*\x04>", after=at).group(0)
    assert b"kept" in out and b"dropped" not in out and b"Error" not in out


def test_ctrl_c_interrupts_main_with_a_traceback_then_the_repl_works(host: BoardHost, tmp_path: Path) -> None:
    main = (
        "import asyncio\n"
        "async def main():\n"
        "    n = 0\n"
        "    while True:\n"
        "        print('tick', n)\n"
        "        n += 1\n"
        "        await asyncio.sleep_ms(50)\n"
        "asyncio.run(main())\n"
    )
    with make_board(host, tmp_path, main) as b:
        b.wait_for_output(b"tick 3\r\n")
        b.write(b"\x03")
        b.wait_for_output(rb"Traceback \(most recent call last\):.*KeyboardInterrupt.*>>> ", timeout_s=10)
        at = b.mark()
        b.write(b"print('alive')\r")
        b.wait_for_output(b"alive\r\n>>> ", after=at)
        # mpremote gets in the same way while main.py runs, after a reset.
        b.reset()
        b.wait_for_output(b"tick 1\r\n", after=at)
        result = mpremote(b.serial_path, "exec", "print('got in')")
        assert result.returncode == 0 and "got in" in result.stdout, result


def test_exception_in_main_is_reported_on_serial_and_in_the_harness(host: BoardHost, tmp_path: Path) -> None:
    with make_board(host, tmp_path, "def f():\n    raise ValueError('bad config')\nf()\n") as b:
        b.wait_for_output(rb'File "main.py", line 2, in f\r\nValueError: bad config\r\n.*>>> ')
        b.wait_for(lambda: any("main.py raised" in line for line in b.logs), 5, "the harness log")


def test_sigkill_mid_write_keeps_closed_files(tmp_path: Path) -> None:
    """SIGKILL of pinseal-vboard while the firmware writes: files closed before are intact after reboot."""
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text(
        "import os\n"
        "n = 0\n"
        "while True:\n"
        "    with open('rec%d.bin' % n, 'wb') as f:\n"
        "        for i in range(64):\n"
        "            f.write(bytes([n % 256]) * 64)\n"
        "    n += 1\n"
        "    print('closed', n)\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pinseal_vboard.cli",
            "--flash",
            str(flash),
            "--firmware",
            "none",
            "--hang-s",
            "0",
            "--echo",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + 60
    while b"closed 5\r\n" not in seen and time.monotonic() < deadline:
        seen += os.read(proc.stdout.fileno(), 4096)
    assert b"closed 5" in seen, seen[-500:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # No VM is left running: the Node process died with its parent.
    time.sleep(0.3)
    ps = subprocess.run(["pgrep", "-f", "board_host.mjs"], capture_output=True, text=True)
    survivors = [
        pid
        for pid in ps.stdout.split()
        if str(proc.pid) in Path(f"/proc/{pid}/stat").read_text().split()[3:4]
    ]
    assert not survivors
    closed = sorted(int(p.stem[3:]) for p in flash.glob("rec*.bin"))
    assert closed, "nothing was written"
    for n in closed[:-1]:  # every file but the one being written at the cut is complete
        assert (flash / f"rec{n}.bin").read_bytes() == bytes([n % 256]) * 4096
    last = (flash / f"rec{closed[-1]}.bin").read_bytes()
    assert len(last) <= 4096 and set(last) <= {closed[-1] % 256}
    # And the board, booted again on that flash, reads the closed files back intact.
    (flash / "main.py").unlink()
    check = (
        "import os\n"
        "n = sorted(int(f[3:-4]) for f in os.listdir() if f.startswith('rec'))\n"
        "ok = all(open('rec%d.bin' % i, 'rb').read() == bytes([i % 256]) * 4096 for i in n[:-1])\n"
        "print('intact', ok)\n"
    )
    with VirtualBoard(BoardOptions(flash_dir=flash, firmware=None)) as again:
        again.wait_for_output(b">>> ")
        result = mpremote(again.serial_path, "exec", check)
    assert "intact True" in result.stdout, result


def test_power_cut_can_tear_the_last_write(host: BoardHost, tmp_path: Path) -> None:
    main = (
        "import time\n"
        "f = open('log.bin', 'ab')\n"
        "while True:\n"
        "    f.write(b'R' * 200)\n"
        "    f.flush()\n"
        "    time.sleep_ms(1)\n"
    )
    with make_board(host, tmp_path, main, hang_s=0) as b:
        b.wait_for(
            lambda: (b.flash_dir / "log.bin").exists() and (b.flash_dir / "log.bin").stat().st_size >= 2000,
            30,
            "writes",
        )
        b.power_cut(tear=True)
        size = (b.flash_dir / "log.bin").stat().st_size
        b.power_on()
    assert set((b.flash_dir / "log.bin").read_bytes()) == {ord("R")}
    # The torn write left a partial record with overwhelming probability (a prefix of 0..199 bytes).
    assert size % 200 != 0 or size > 0


def test_memory_error_past_the_board_ram_never_wedges_it(board: VirtualBoard) -> None:
    code = (
        "import asyncio\n"
        "held = []\n"
        "async def grow():\n"
        "    while True:\n"
        "        held.append(bytearray(4000))\n"
        "        await asyncio.sleep_ms(0)\n"
        "try:\n"
        "    asyncio.run(grow())\n"
        "finally:\n"
        "    pass\n"
    )
    result = mpremote(board.serial_path, "exec", code)
    assert "MemoryError" in result.stdout + result.stderr, result
    # Without a soft reset ("resume"), the same session: release the memory, and the board answers again.
    result = mpremote(board.serial_path, "resume", "exec", "n = len(held); held.clear(); print('ok', n > 20)")
    assert result.returncode == 0 and "ok True" in result.stdout, result
    result = mpremote(
        board.serial_path, "resume", "exec", "import gc; gc.collect(); print('free', gc.mem_free() > 50000)"
    )
    assert result.returncode == 0 and "free True" in result.stdout, result


def test_machine_reset_deepsleep_and_rtc_memory(host: BoardHost, tmp_path: Path) -> None:
    main = (
        "import machine\n"
        "cause = machine.reset_cause()\n"
        "mem = machine.RTC().memory()\n"
        "print('boot', cause, mem)\n"
        "if cause == machine.PWRON_RESET:\n"
        "    machine.RTC().memory(b'kept')\n"
        "    machine.reset()\n"
        "elif cause == machine.SOFT_RESET:\n"
        "    machine.deepsleep(300)\n"
        "print('done', machine.unique_id().hex())\n"
    )
    with make_board(host, tmp_path, main) as b:
        b.wait_for_output(
            rb"boot 1 b''\r\n.*boot 5 b'kept'\r\n.*boot 4 b'kept'\r\ndone [0-9a-f]{12}\r\n", timeout_s=30
        )
        # Power cut: RTC memory is lost.
        at = b.mark()
        b.restart()
        b.wait_for_output(rb"boot 1 b''", after=at)


def test_watchdog_resets_a_busy_loop(host: BoardHost, tmp_path: Path) -> None:
    main = (
        "import machine\n"
        "print('cause', machine.reset_cause())\n"
        "if machine.reset_cause() != machine.WDT_RESET:\n"
        "    wdt = machine.WDT(timeout=500)\n"
        "    while True:\n"
        "        pass\n"
    )
    with make_board(host, tmp_path, main, hang_s=0) as b:
        b.wait_for_output(b"cause 3\r\n", timeout_s=20)


def test_a_hung_vm_without_watchdog_is_reported_and_reset(host: BoardHost, tmp_path: Path) -> None:
    main = (
        "import machine\n"
        "print('cause', machine.reset_cause())\n"
        "if machine.reset_cause() == 1:\n"
        "    while True:\n"
        "        pass\n"
    )
    with make_board(host, tmp_path, main, hang_s=2) as b:
        b.wait_for_output(rb"endless synchronous loop.*cause 2\r\n", timeout_s=30)


def test_clock_jump_and_speed(board: VirtualBoard) -> None:
    result = mpremote(board.serial_path, "exec", "import time; print(time.gmtime()[0])")
    assert "2000" in result.stdout, result  # an unset RTC after power-on, as on a board
    board.clock(set_wall_ms=1_790_000_000_000)
    result = mpremote(board.serial_path, "exec", "import time; print(time.time())")
    assert abs(int(result.stdout.split()[-1]) - 1_790_000_000) < 5, result
    board.clock(jump_ms=3_600_000)
    result = mpremote(board.serial_path, "exec", "import time; print(time.time())")
    assert abs(int(result.stdout.split()[-1]) - 1_790_003_600) < 5, result
    board.clock(speed=50)
    code = (
        "import asyncio, time\n"
        "t = time.ticks_ms()\n"
        "asyncio.run(asyncio.sleep(5))\n"
        "print('slept', time.ticks_diff(time.ticks_ms(), t))\n"
    )
    started = time.monotonic()
    result = mpremote(board.serial_path, "exec", code)
    assert "slept" in result.stdout and int(result.stdout.split()[-1]) >= 5000, result
    assert time.monotonic() - started < 5  # five board seconds took a tenth of that


def test_rtc_set_from_the_board_keeps_a_time_beyond_2_31_ms(board: VirtualBoard) -> None:
    """machine.RTC().datetime(...) as the firmware sets it from a gateway ack: today's time in ms is past
    2**31, and once crossed into JS as a 32-bit int it said January 1970 (every ack-time reading stale)."""
    code = "import machine, time\nmachine.RTC().datetime((2026, 12, 6, 6, 4, 20, 0, 0))\nprint(time.time())\n"
    result = mpremote(board.serial_path, "exec", code)
    assert abs(int(result.stdout.split()[-1]) - 1_796_530_800) < 5, result


def test_nobody_reading_and_reconnecting_does_not_wedge_the_board(host: BoardHost, tmp_path: Path) -> None:
    main = "for i in range(3000):\n    print('line %05d' % i, 'x' * 40)\nprint('end of output')\n"
    with make_board(host, tmp_path, main) as b:
        b.wait_for_output(b"end of output", timeout_s=60)
        assert b.pty is not None and b.pty.dropped_bytes > 0  # more than a pty holds, and nobody read it
        for _ in range(2):  # a client comes and goes; the board keeps answering
            result = mpremote(b.serial_path, "exec", "print('still here')")
            assert "still here" in result.stdout, result


def test_romfs_deploy_with_mpremote_and_modules_run_in_place(host: BoardHost, tmp_path: Path) -> None:
    """`mpremote romfs deploy` writes the board's ROMFS partition; after a reset its .mpy modules import from
    /rom and their code takes no heap (the reason pinseal's firmware ships that way)."""
    src = tmp_path / "romsrc"
    (src / "romdemo").mkdir(parents=True)
    body = "\n".join(f"def f{i}(x):\n    return x * {i} + {i * 7}\n" for i in range(60))
    (src / "romdemo" / "__init__.py").write_text(body + "\nNAME = 'from rom'\n")
    (tmp_path / "flash").mkdir()
    (tmp_path / "flash" / "ondisk.py").write_text(body)
    with make_board(host, tmp_path) as b:
        b.wait_for_output(b">>> ")
        result = mpremote(b.serial_path, "romfs", "deploy", str(src))
        assert result.returncode == 0 and "ROMFS image deployed" in result.stdout, result
        assert b.romfs_image.stat().st_mode & 0o777 == 0o600
        probe = (
            "import gc, sys\n"
            "gc.collect(); a = gc.mem_alloc()\n"
            "import romdemo\n"
            "gc.collect(); b = gc.mem_alloc()\n"
            "import ondisk\n"
            "gc.collect(); c = gc.mem_alloc()\n"
            "print('rom', romdemo.NAME, romdemo.__file__, romdemo.f3(2), 'heap', b - a, c - b)\n"
        )
        result = mpremote(b.serial_path, "soft-reset", "+", "exec", probe)
    match = re.search(r"rom from rom /rom/romdemo/__init__.mpy 27 heap (\d+) (\d+)", result.stdout)
    assert match, result
    from_rom, from_flash = int(match[1]), int(match[2])
    # function objects and the module dict stay in RAM; the bytecode and constants do not
    assert from_rom < from_flash * 0.75, (from_rom, from_flash)
