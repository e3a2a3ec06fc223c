"""A board's USB serial port as a pseudo-terminal.

The board side holds the pty master. Two things a real USB CDC/UART port does that a bare pty does not are
handled here: a client closing the port must not end the board's side (reading a master whose slave is closed
gives EIO; keeping our own slave fd open avoids it), and a board must never block when nobody reads (the pty
buffer fills after ~18 KB: output is then dropped and counted, as a USB CDC port drops what no host reads).
"""

from __future__ import annotations

import errno
import fcntl
import os
import selectors
import threading
import tty
from collections.abc import Callable


class SerialPty:
    """Pumps bytes between a pty and a board: `on_input` gets what clients type, `write` sends."""

    def __init__(self, on_input: Callable[[bytes], None]) -> None:
        self._master, self._slave = os.openpty()
        # Raw mode at once: the default line discipline would echo the board's output back as input.
        tty.setraw(self._slave)
        flags = fcntl.fcntl(self._master, fcntl.F_GETFL)
        fcntl.fcntl(self._master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.path = os.ttyname(self._slave)
        self.dropped_bytes = 0
        self._on_input = on_input
        self._stop_r, self._stop_w = os.pipe()
        self._closed = False
        self._thread = threading.Thread(target=self._pump, name=f"vboard-pty {self.path}", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        """Board output: whatever the pty cannot take now is dropped (nobody is reading)."""
        if self._closed:
            return
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        except OSError as e:
            if e.errno not in (errno.EIO, errno.EAGAIN):
                raise
            written = 0
        self.dropped_bytes += len(data) - written

    def _pump(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._master, selectors.EVENT_READ)
            sel.register(self._stop_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    if key.fd == self._stop_r:
                        return
                    try:
                        data = os.read(self._master, 4096)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        if e.errno == errno.EIO:  # no client; cannot happen while we hold the slave open
                            continue
                        raise
                    if data:
                        self._on_input(data)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        for fd in (self._master, self._slave, self._stop_r, self._stop_w):
            os.close(fd)
