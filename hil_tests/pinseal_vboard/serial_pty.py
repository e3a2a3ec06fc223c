"""A board's USB serial port as a pseudo-terminal.

The board side holds the pty master. Two things a real USB CDC/UART port does that a bare pty does not are
handled here: a client closing the port must not end the board's side (reading a master whose slave is closed
gives EIO; keeping our own slave fd open avoids it), and a board must never block when nobody reads. Output
the pty cannot take at once (its buffer holds ~18 KB) waits in a queue and is written as the client reads, so
a slow reader (mpremote reads a byte at a time) loses nothing; only when the queue passes QUEUE_LIMIT bytes,
i.e. nobody is reading, is the oldest output dropped and counted, as a USB CDC port drops what no host takes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import selectors
import threading
import tty
from collections.abc import Callable

QUEUE_LIMIT = 64 * 1024


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
        self._pending = bytearray()
        self._lock = threading.Lock()
        self._stop_r, self._stop_w = os.pipe()  # also wakes the pump when output is queued
        self._closed = False
        self._thread = threading.Thread(target=self._pump, name=f"vboard-pty {self.path}", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        """Board output: written now if the pty takes it, else queued (oldest dropped past QUEUE_LIMIT)."""
        if self._closed:
            return
        with self._lock:
            self._pending += data
            if len(self._pending) > QUEUE_LIMIT:
                excess = len(self._pending) - QUEUE_LIMIT
                del self._pending[:excess]
                self.dropped_bytes += excess
            self._flush_locked()
            if self._pending:
                os.write(self._stop_w, b"w")

    def _flush_locked(self) -> None:
        while self._pending:
            try:
                n = os.write(self._master, self._pending[:4096])
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EIO, errno.EAGAIN):
                    return
                raise
            del self._pending[:n]

    def _pump(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._master, selectors.EVENT_READ)
            sel.register(self._stop_r, selectors.EVENT_READ)
            while True:
                with self._lock:
                    want = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._pending else 0)
                sel.modify(self._master, want)
                for key, events in sel.select(timeout=1.0):
                    if key.fd == self._stop_r:
                        if self._closed:
                            return
                        os.read(self._stop_r, 4096)
                        continue
                    if events & selectors.EVENT_WRITE:
                        with self._lock:
                            self._flush_locked()
                    if events & selectors.EVENT_READ:
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
