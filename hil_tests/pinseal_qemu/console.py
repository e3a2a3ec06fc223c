"""The serial console of a running QEMU board, read from its pty into memory by a thread.

A test that lets the firmware run (its own main.py) must keep reading the pty: QEMU's UART waits for the
host side to drain, so an unread console would stall the board and hide where a power cut landed. The text is
kept whole, so a test can look for a line after a mark (what this boot printed) and see what printed before.
"""

from __future__ import annotations

import os
import re
import select
import termios
import threading
import time
import tty


class ConsoleTimeout(TimeoutError):
    """The expected output did not come in time; the message ends with what did."""


class Console:
    """Console(pty path): everything the board prints from now on, in `data`."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd, termios.TCSANOW)  # no echo or line editing between the board and us
        self.data = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="qemu-console", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # the board is gone (QEMU killed): the pty hangs up
                return
            if not chunk:
                return
            with self._lock:
                self.data += chunk

    def mark(self) -> int:
        with self._lock:
            return len(self.data)

    def text(self, start: int = 0, end: int | None = None) -> str:
        with self._lock:
            return bytes(self.data[start:end]).decode(errors="replace")

    def wait_for(self, pattern: bytes, timeout_s: float, after: int = 0) -> re.Match[bytes]:
        """The first match of `pattern` in what was printed from offset `after` on (match offsets are
        relative to `after`)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                found = regex.search(bytes(self.data[after:]))
            if found:
                return found
            if time.monotonic() > deadline:
                raise ConsoleTimeout(
                    f"no {pattern!r} within {timeout_s:g} s; the console: {self.text(after)[-600:]!r}"
                )
            time.sleep(0.02)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self.fd)
