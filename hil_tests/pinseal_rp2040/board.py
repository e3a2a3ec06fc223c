"""One emulated Raspberry Pi Pico: hil_tests/rp2040/board.mjs (rp2040js) with its two lines on ptys.

The REPL (USB CDC) is one pty, for mpremote and pinseal-provision; UART0 (the serial transport's frames) is
another, for a gateway's [serial] intake: a 0x03 in a frame must never reach the REPL, where it would stop the
firmware. Bytes cross between the Node process and the ptys on two socketpairs (one per line, no framing, so
nothing is re-encoded on the way). The flash is a host file that Node writes through on every erase and
program, so SIGKILL (`kill()`) is a power cut and a new board on the same file is the next power-on.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinseal_vboard.profiles import board_profile_path
from pinseal_vboard.serial_pty import SerialPty

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "hil_tests" / "rp2040" / "board.mjs"
IMAGES = REPO / "micropython" / "images"
# PINSEAL_RP2_UF2: another image for every launcher and test (a candidate build before it is committed).
UF2 = Path(os.environ.get("PINSEAL_RP2_UF2") or IMAGES / "rp2-pico" / "firmware.uf2")
BOOTROM = IMAGES / "rp2040-bootrom" / "bootrom_b1.bin"
START_TIMEOUT_S = 20.0


class Rp2040Error(RuntimeError):
    """Node or rp2040js is missing, the board did not start, or it did not print what was awaited."""


@dataclass
class Rp2040Options:
    """board: a profile id or board.json path; flash: the host file (2 MB, created blank if missing);
    sensors: a sensors script as for the virtual board (docs/virtual-board.md)."""

    flash: Path
    board: str = "pico"
    uf2: Path = UF2
    bootrom: Path = BOOTROM
    sensors: Path | None = None


class Rp2040Board:
    """`start()`, then `serial_path` (REPL) and `uart_path`; `output` is what the REPL printed."""

    def __init__(self, options: Rp2040Options) -> None:
        self.options = options
        self.proc: subprocess.Popen[bytes] | None = None
        self.pty: SerialPty | None = None
        self.uart_pty: SerialPty | None = None
        self.output = bytearray()
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._socks: list[socket.socket] = []
        self._req = itertools.count(1)

    @property
    def serial_path(self) -> str:
        if self.pty is None:
            raise Rp2040Error("the board has not been started")
        return self.pty.path

    @property
    def uart_path(self) -> str:
        if self.uart_pty is None:
            raise Rp2040Error("the board has not been started")
        return self.uart_pty.path

    def start(self, timeout_s: float = START_TIMEOUT_S) -> Rp2040Board:
        profile = json.loads(board_profile_path(self.options.board).read_text())
        if profile.get("mcu") != "rp2040":
            # The image is MicroPython's RPI_PICO build for the RP2040: another chip's profile would put the
            # firmware on pins and a RAM that board does not have.
            raise Rp2040Error(
                f"{self.options.board} is not an RP2040 board (its profile's mcu is {profile.get('mcu')!r}); "
                "rp2040js runs the pico profile"
            )
        node = shutil.which("node")
        if node is None or not (REPO / "node_modules" / "rp2040js").is_dir():
            raise Rp2040Error("node or node_modules/rp2040js is missing: run `make setup`")
        self.options.flash.parent.mkdir(parents=True, exist_ok=True)
        cdc_ours, cdc_node = socket.socketpair()
        uart_ours, uart_node = socket.socketpair()
        self._socks = [cdc_ours, uart_ours]
        cmd = [
            node,
            str(RUNNER),
            "--uf2",
            str(self.options.uf2),
            "--bootrom",
            str(self.options.bootrom),
            "--board",
            str(board_profile_path(self.options.board)),
            "--flash",
            str(self.options.flash.resolve()),
            "--cdc-fd",
            str(cdc_node.fileno()),
            "--uart-fd",
            str(uart_node.fileno()),
        ]
        if self.options.sensors is not None:
            cmd += ["--sensors", str(self.options.sensors)]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(cdc_node.fileno(), uart_node.fileno()),
            cwd=REPO,
        )
        cdc_node.close()
        uart_node.close()
        self.pty = SerialPty(cdc_ours.sendall)
        self.uart_pty = SerialPty(uart_ours.sendall)
        for sock, sink, name in ((cdc_ours, self._on_repl, "cdc"), (uart_ours, self.uart_pty.write, "uart")):
            threading.Thread(
                target=self._relay, args=(sock, sink), name=f"rp2040-{name}", daemon=True
            ).start()
        threading.Thread(target=self._read_events, name="rp2040-events", daemon=True).start()
        self.wait_for(
            lambda: any(e.get("ev") == "ready" for e in self.events), timeout_s, "the runner to start"
        )
        return self

    def _on_repl(self, data: bytes) -> None:
        assert self.pty is not None
        with self._cond:
            self.output += data
            self._cond.notify_all()
        self.pty.write(data)

    def _relay(self, sock: socket.socket, sink: Any) -> None:
        with contextlib.suppress(OSError):
            while data := sock.recv(4096):
                sink(data)

    def _read_events(self) -> None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"ev": "log", "text": line.decode(errors="replace").rstrip()}
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self.events.append({"ev": "gone", "code": proc.wait()})
            self._cond.notify_all()

    def wait_for(self, predicate: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                gone = [e for e in self.events if e.get("ev") in ("gone", "exit")]
                if left <= 0 or gone:
                    tail = self.output[-600:].decode(errors="replace")
                    raise Rp2040Error(
                        f"rp2040js board: waited {timeout_s:g} s for {what} in vain ({gone or 'running'}); "
                        f"REPL output:\n{tail}"
                    )
                self._cond.wait(min(left, 0.5))

    def mark(self) -> int:
        with self._cond:
            return len(self.output)

    def wait_for_output(self, pattern: bytes, timeout_s: float, after: int = 0) -> re.Match[bytes]:
        rx = re.compile(pattern, re.DOTALL)
        found: list[re.Match[bytes]] = []

        def matched() -> bool:
            m = rx.search(self.output, after)
            if m:
                found.append(m)
            return m is not None

        self.wait_for(matched, timeout_s, f"REPL output matching {pattern!r}")
        return found[0]

    def command(self, op: str, timeout_s: float = 10.0, **args: Any) -> dict[str, Any]:
        """Ask the runner (sensors control, stats); its reply."""
        proc = self.proc
        if proc is None or proc.stdin is None:
            raise Rp2040Error("the board has not been started")
        req = next(self._req)
        proc.stdin.write((json.dumps({"op": op, "req": req, **args}) + "\n").encode())
        proc.stdin.flush()
        reply: list[dict[str, Any]] = []

        def answered() -> bool:
            reply[:] = [e for e in self.events if e.get("req") == req]
            return bool(reply)

        self.wait_for(answered, timeout_s, f"an answer to {op}")
        if reply[0].get("error"):
            raise Rp2040Error(f"{op}: {reply[0]['error']}")
        return reply[0]

    def stats(self) -> dict[str, Any]:
        """Cycles, simulated and host seconds, flash operations so far."""
        return self.command("stats")

    def kill(self) -> None:
        """Pull the power: SIGKILL. The flash file holds every erase and program that completed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close()

    def stop(self) -> None:
        """Stop the runner (SIGTERM; its flash file is current either way)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close()

    def _close(self) -> None:
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._socks = []
        for pty in (self.pty, self.uart_pty):
            if pty is not None:
                pty.close()
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def __enter__(self) -> Rp2040Board:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
