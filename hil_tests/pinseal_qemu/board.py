"""One QEMU board: MicroPython's MPS2-AN385 image under qemu-system-arm, its REPL on a pseudo-terminal.

The flash is a host file reached through ARM semihosting (the image's frozen _boot.py mounts littlefs on it),
so killing QEMU with SIGKILL is a power cut and starting it again on the same file is the next power-on.
QEMU prints the pty it allocated ("char device redirected to /dev/pts/N"); the board is ready for mpremote
once that line is out, as the UART buffers what is typed before MicroPython reads it.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from pinseal_qemu.image import QEMU_IMAGE

PTY_LINE = re.compile(rb"char device redirected to (/dev/pts/\d+)")
START_TIMEOUT_S = 10.0


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the launcher dies, so SIGKILL of `pinseal-vboard` (or of a
    test) is a power cut of the board too, and never leaves a QEMU busy-looping a core."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class QemuError(RuntimeError):
    """QEMU is missing, did not start, or exited before its serial line appeared."""


class QemuBoard:
    """A QEMU MPS2-AN385 board; `start()` then `serial_path`; `kill()` cuts the power, `stop()` ends it."""

    def __init__(
        self,
        flash: Path | None,
        image: Path = QEMU_IMAGE,
        flash_bytes: int | None = None,
        icount: bool = False,
        console_file: Path | None = None,
    ) -> None:
        self.flash = flash
        # Instead of the pty: the UART written straight to this file, output only (no REPL). QEMU writes it
        # from the CPU thread as the board prints, so after a SIGKILL the file holds exactly what the board
        # printed before the cut; a pty reader can lag, and the kernel drops what it had not read yet.
        self.console_file = console_file
        self.image = image
        self.flash_bytes = flash_bytes
        self.icount = icount
        self.proc: subprocess.Popen[bytes] | None = None
        self.serial_path: str | None = None
        self.log = b""

    def command(self) -> list[str]:
        """The qemu-system-arm command line (-icount shift=0 makes ticks_us() count instructions / 1000)."""
        append = []
        if self.flash is not None:
            append.append(f"flash={self.flash.resolve()}")
        if self.flash_bytes is not None:
            append.append(f"flash_bytes={self.flash_bytes}")
        cmd = [
            "qemu-system-arm",
            "-machine",
            "mps2-an385",
            "-semihosting",
            "-nographic",
            "-monitor",
            "null",
            "-serial",
            f"file:{self.console_file}" if self.console_file is not None else "pty",
            "-kernel",
            str(self.image),
        ]
        if append:
            cmd += ["-append", " ".join(append)]
        if self.icount:
            cmd += ["-icount", "shift=0"]
        return cmd

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Power on; return the pty of the REPL once QEMU has opened it ("" with a console file)."""
        if shutil.which("qemu-system-arm") is None:
            raise QemuError("qemu-system-arm is not installed (apt-get install qemu-system-arm)")
        if self.flash is not None and any(c.isspace() for c in str(self.flash.resolve())):
            raise QemuError(
                f"the flash path must not contain spaces (QEMU's -append splits on them): {self.flash}"
            )
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        seen = b""
        deadline = time.monotonic() + timeout_s
        while self.console_file is not None and time.monotonic() < deadline:
            if self.console_file.exists():  # QEMU opens it before the CPU starts
                self._drain(seen)
                return ""
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        while time.monotonic() < deadline:
            chunk = self.proc.stdout.read()
            if chunk:
                seen += chunk
                match = PTY_LINE.search(seen)
                if match:
                    self.serial_path = match.group(1).decode()
                    self._drain(seen)
                    return self.serial_path
            if self.proc.poll() is not None:
                raise QemuError(
                    f"qemu-system-arm exited with {self.proc.returncode}: {seen.decode(errors='replace')}"
                )
            time.sleep(0.02)
        self.kill()
        raise QemuError(
            f"qemu-system-arm printed no pty within {timeout_s} s: {seen.decode(errors='replace')}"
        )

    def _drain(self, seen: bytes) -> None:
        """Keep reading QEMU's own output (warnings, errors) so a full pipe can never stall it; the last
        4 KB stay in `log` for a failing test to show."""
        self.log = seen[-4096:]
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), True)

        def pump() -> None:
            assert proc.stdout is not None
            for chunk in iter(lambda: proc.stdout.read1(4096), b""):
                self.log = (self.log + chunk)[-4096:]

        threading.Thread(target=pump, name="qemu-output", daemon=True).start()

    def kill(self) -> None:
        """Pull the power: SIGKILL, nothing flushed but what the board already wrote to its flash file."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
        self.serial_path = None

    def stop(self) -> None:
        """End the board (the same as a power cut: QEMU holds nothing that a clean stop would save)."""
        self.kill()

    def __enter__(self) -> QemuBoard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
