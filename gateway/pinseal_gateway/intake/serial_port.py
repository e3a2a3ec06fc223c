"""One serial port the gateway reads: opened, read and written in threads of its own, reopened after an
unplug, for as long as the intake runs.

pyserial's blocking calls are the portable ones (ttys, USB CDC, `rfc2217://` and `socket://` URLs alike),
so each port gets a reader thread (reads with a short timeout, hands the bytes to the event loop) and a
writer thread (frames queued by the loop, and the hello frame whenever the line has been quiet for
`HELLO_INTERVAL_S`). A port that fails (unplugged, never there, a permission denied) is closed and tried
again every `reopen_s`; the intake hears of each change once (`on_state`), not of every attempt, so an
absent board costs one log line, not one a second.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable

import serial

from pinseal_protocol import serial_frames as sf

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.1
READ_MAX = 4096
WRITE_QUEUE_MAX = 256  # frames; beyond it the oldest are dropped (the device resends, the acks come again)
HELLO = sf.encode(sf.KIND_HELLO, b"")


class SerialPort:
    """Reads `url` into `on_bytes(data)` and writes frames given to `write_frame`, from threads.

    `on_bytes` and `on_state(open: bool, why: str)` are called from the port's threads: the caller hands
    them to its event loop. `on_state(True, "")` also means the byte stream restarted: a frame half-read
    before the port went away is not the beginning of the next one.
    """

    def __init__(
        self,
        url: str,
        baudrate: int,
        reopen_s: float,
        on_bytes: Callable[[bytes], None],
        on_state: Callable[[bool, str], None],
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.reopen_s = reopen_s
        self._on_bytes = on_bytes
        self._on_state = on_state
        self._port: serial.SerialBase | None = None
        self._opened = threading.Event()
        self._stop = threading.Event()
        self._out: queue.Queue[bytes] = queue.Queue(WRITE_QUEUE_MAX)
        self._reader = threading.Thread(target=self._read_loop, name=f"serial-read {url}", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name=f"serial-write {url}", daemon=True)
        self.is_open = False

    def start(self) -> None:
        self._reader.start()
        self._writer.start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._out.put_nowait(b"")  # wakes the writer
        port = self._port
        if port is not None and hasattr(port, "cancel_read"):
            with contextlib.suppress(Exception):
                port.cancel_read()  # wakes the reader: the port is closed only once it has let go
        self._reader.join(5)
        self._writer.join(5)
        self._close()

    def write_frame(self, frame: bytes) -> None:
        """Queue a frame for the line (from any thread); dropped, oldest first, while the line is stuck."""
        while True:
            try:
                self._out.put_nowait(frame)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._out.get_nowait()

    # -- threads -------------------------------------------------------------------------------------------

    def _open(self) -> serial.SerialBase:
        port = serial.serial_for_url(
            self.url, baudrate=self.baudrate, timeout=READ_TIMEOUT_S, write_timeout=2.0, do_not_open=True
        )
        if hasattr(port, "exclusive"):
            with contextlib.suppress(ValueError, AttributeError):
                port.exclusive = True  # a second reader on the same tty would steal half the bytes
        port.open()
        return port

    def _close(self) -> None:
        port, self._port = self._port, None
        self._opened.clear()
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()

    def _read_loop(self) -> None:
        last_failure = ""
        while not self._stop.is_set():
            try:
                self._port = self._open()
            except (serial.SerialException, OSError, ValueError) as exc:
                why = str(exc) or type(exc).__name__
                if why != last_failure:  # once per new reason, not once per attempt
                    last_failure = why
                    self._on_state(False, why)
                self._stop.wait(self.reopen_s)
                continue
            last_failure = ""
            self.is_open = True
            self._opened.set()
            self._on_state(True, "")
            why = self._pump(self._port)
            self.is_open = False
            self._close()
            if not self._stop.is_set():
                last_failure = why
                self._on_state(False, why)
                self._stop.wait(self.reopen_s)

    def _pump(self, port: serial.SerialBase) -> str:
        """Read until the port fails or the intake stops; returns why it ended."""
        while not self._stop.is_set():
            try:
                # what is waiting, or else the first byte to come (within the timeout): read(READ_MAX)
                # would wait out the timeout for bytes that never come, a 100 ms stall per ack
                data = port.read(min(max(port.in_waiting, 1), READ_MAX))
            except (serial.SerialException, OSError) as exc:
                return str(exc) or type(exc).__name__
            if data:
                self._on_bytes(bytes(data))
        return "stopped"

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self._out.get(timeout=sf.HELLO_INTERVAL_S)
            except queue.Empty:
                frame = HELLO  # the line was quiet: tell the device a gateway is here
            if self._stop.is_set():
                return
            if not frame or not self._opened.wait(self.reopen_s):
                continue  # no port: the frame is lost to the line, as if sent; the device resends
            port = self._port
            if port is None:
                continue
            try:
                port.write(frame)
            except (serial.SerialException, OSError) as exc:
                # the reader sees the same failure and reopens; this frame is lost to the line, which the
                # device's resend covers
                log.debug("serial %s: write failed: %s", self.url, exc)
