"""The link to one board: mpremote's SerialTransport (raw REPL, raw-paste) used as a library, with timeouts,
the firmware's safe-mode window, and errors that say what happened.

Why not `mpremote` as a subprocess: every step here is many small exchanges (hash 30 files, write chunks,
read JSON answers), and a failure must be classified (port vanished, board silent, board busy, code raised)
rather than read from a exit status. mpremote's transport already speaks raw-paste with its flow control;
this module adds what provisioning needs around it:

- **Getting in**: Ctrl-C, repeatedly, for `interrupt_s` seconds, then Ctrl-A for the raw REPL. A board whose
  main.py runs the firmware stops at the first Ctrl-C; one that does not (a synchronous loop) can be reset
  by hand (or with `reset=True`, the RTS line of USB-UART boards) while the tool keeps sending Ctrl-C, which
  then lands inside the firmware's safe-mode window at boot.
- **Timeouts everywhere**: pyserial reads return after `read_timeout_s`, so a board that stops answering
  (power cut, killed virtual board) ends in `BoardTimeout`, never a hang; a port that disappears (unplugged)
  ends in `BoardGone`.
- **A small agent**: a few helper functions defined once per session on the device (hash files, write a file
  through a temporary name and rename it, read a file) so that a file is either the old one or the new one
  after a cut, and the device does the SHA-256 over what it really stored.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import serial
from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from pinseal_provision import ports
from pinseal_provision.errors import (
    BoardBusy,
    BoardGone,
    BoardTimeout,
    DeviceError,
    InBootloader,
    PortNotFound,
    ProvisionError,
)

log = logging.getLogger(__name__)
# The raw-REPL traffic (commands sent, answers read), at DEBUG: shown with `-v` only, never on a console by
# default. File contents are logged as sizes, so config secrets never reach it.
traffic = logging.getLogger(__name__ + ".traffic")
TRAFFIC_CHARS = 300
_BULK = re.compile(r"^(_ps_w|_ps_read)\(")

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY_PROMPT = b">>> "
# What boot ROMs print on their UART when they wait for a flasher instead of running MicroPython.
BOOTLOADER_SIGNS = (b"waiting for download", b"DOWNLOAD_BOOT", b"boot:0x3", b"ets Jun  8 2016")
TMP_SUFFIX = ".ps-tmp"
WRITE_CHUNK_BYTES = 2048
READ_CHUNK_BYTES = 2048  # 4 KB of hex per answer
HASHES_PER_CALL = (
    16  # ~1.5 KB per answer  # per raw-paste command; small enough for a 100 KB heap, large enough to be fast
)
ANSWER = re.compile(rb"^PINSEAL (\{.*\})\s*$", re.MULTILINE)

# The agent: helpers defined once per session in the raw REPL's globals, a MicroPython file shipped with
# this package (agent/provision_agent.py) so that mpy-cross and pyright check it like the firmware.
AGENT_SOURCE = resources.files("pinseal_provision").joinpath("agent", "provision_agent.py")
AGENT = AGENT_SOURCE.read_text()


@dataclass(frozen=True)
class BoardSystem:
    """What the board says about its MicroPython."""

    micropython: str
    platform: str
    mpy_version: int


class Board:
    """An open connection to one board in the raw REPL. Use as a context manager (`with Board(port) as b`)."""

    def __init__(
        self,
        port: str | None,
        *,
        board_id: str | None = None,
        baudrate: int = 115200,
        timeout_s: float = 10.0,
        interrupt_s: float = 8.0,
        read_timeout_s: float = 0.5,
        reset: bool = False,
        soft_reset: bool = True,
    ) -> None:
        self.port = ports.resolve(port, board_id)
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.interrupt_s = interrupt_s
        self.read_timeout_s = read_timeout_s
        self.reset = reset
        self.soft_reset = soft_reset
        self.transport: SerialTransport | None = None
        self._at_prompt = False

    # -- session ---------------------------------------------------------------------------------------------
    def __enter__(self) -> Board:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        try:
            self.transport = SerialTransport(self.port, baudrate=self.baudrate, timeout=self.read_timeout_s)
        except TransportError as exc:
            raise PortNotFound(
                f"cannot open {self.port}: {exc}",
                "check the port name and that no other program (mpremote, screen, a serial monitor) holds it",
            ) from exc
        except (OSError, serial.SerialException) as exc:
            raise PortNotFound(f"cannot open {self.port}: {exc}") from exc
        if self.reset:
            self._pulse_reset()
        self._enter_raw_repl()
        self._run(AGENT, self.timeout_s)

    def close(self) -> None:
        t, self.transport = self.transport, None
        if t is None:
            return
        try:
            if t.in_raw_repl:
                t.exit_raw_repl()
        except (OSError, serial.SerialException):
            pass
        with contextlib.suppress(OSError, serial.SerialException):
            t.serial.close()  # not t.close(): it drops DTR/RTS, which resets many ESP32 boards

    def restart_firmware(self) -> None:
        """Give the board back to its firmware: leave the raw REPL and soft-reset from the friendly one
        (Ctrl-D on an empty line), so boot.py and main.py run again as after power-on, then close the
        port. Provisioning stopped the firmware to talk to the REPL; without this the board would sit at
        its prompt until someone reset it."""
        t = self.transport
        if t is None:
            raise ProvisionError("the board is not open")
        try:
            t.exit_raw_repl()
            seen = self._read_until(FRIENDLY_PROMPT)
            if not seen.endswith(FRIENDLY_PROMPT):
                raise BoardTimeout(f"{self.port}: no friendly REPL prompt after leaving the raw REPL")
            self._serial.write(b"\x04")
            seen = self._read_until(b"soft reboot")
        except (OSError, serial.SerialException) as exc:
            raise self._gone(exc) from exc
        if not seen.endswith(b"soft reboot"):
            raise BoardTimeout(f"{self.port}: the board did not soft-reset", "press its reset button")
        self.close()

    def _pulse_reset(self) -> None:
        """EN low then high through RTS, as esptool's hard reset does on USB-UART ESP32 boards."""
        s = self._serial
        try:
            s.dtr = False
            s.rts = True
            time.sleep(0.1)
            s.rts = False
        except (OSError, serial.SerialException, ValueError):
            log.info("%s: no RTS line to reset through; press the reset button instead", self.port)

    @property
    def _serial(self) -> Any:
        if self.transport is None:
            raise ProvisionError("the board is not open")
        return self.transport.serial

    def _read_available(self, wait_s: float) -> bytes:
        s = self._serial
        deadline = time.monotonic() + wait_s
        data = b""
        while time.monotonic() < deadline:
            n = s.in_waiting
            if n:
                data += s.read(n)
            else:
                time.sleep(0.02)
        return data

    def _enter_raw_repl(self, attempts: int = 2) -> None:
        """Ctrl-C until the REPL answers (through main.py and the safe-mode window), then the raw REPL and,
        by default, a soft reset in it. A reset racing with us (a button pressed meanwhile) is retried."""
        for attempt in range(attempts):
            self._interrupt()
            if not self.soft_reset:
                return
            try:
                self._soft_reset()
                return
            except BoardTimeout:
                if attempt == attempts - 1:
                    raise

    def _interrupt(self) -> None:
        seen = b""
        deadline = time.monotonic() + self.interrupt_s
        entered = False
        try:
            while time.monotonic() < deadline:
                self._serial.write(b"\r\x03\x03")
                seen += self._read_available(0.15)
                self._serial.write(b"\r\x01")
                seen += self._read_available(0.35)
                if RAW_BANNER in seen and seen.rstrip().endswith(b">"):
                    entered = True
                    break
        except (OSError, serial.SerialException) as exc:
            raise self._gone(exc) from exc
        if not entered:
            tail = seen[-300:].decode(errors="replace")
            if any(sign in seen for sign in BOOTLOADER_SIGNS):
                raise InBootloader(
                    f"{self.port}: the board is in its ROM bootloader: {tail.strip()[-120:]!r}"
                )
            if not seen:
                raise BoardTimeout(
                    f"{self.port}: no answer within {self.interrupt_s:g} s",
                    "is it a board running MicroPython? One in its bootloader (or without MicroPython) is "
                    "silent: flash it with `pinseal-provision flash`; check the cable and --baud",
                )
            raise BoardBusy(
                f"{self.port}: the board prints but does not give its REPL; last output: {tail!r}"
            )
        assert self.transport is not None
        self.transport.in_raw_repl = True
        self._at_prompt = True  # the loop above read the raw REPL's ">"

    def _read_until(self, ending: bytes, timeout_s: float | None = None) -> bytes:
        """Read up to `ending` or until the time is up, whichever is first. (mpremote's read_until checks
        its overall limit only while no bytes come, so a board that keeps printing would hold it forever.)"""
        s = self._serial
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        data = bytearray()
        try:
            while not data.endswith(ending) and time.monotonic() < deadline:
                data += s.read(1)
        except (OSError, serial.SerialException) as exc:
            raise self._gone(exc) from exc
        return bytes(data)

    def _soft_reset(self) -> None:
        """Ctrl-D in the raw REPL: a fresh interpreter (boot.py runs, main.py does not)."""
        if not self._at_prompt:
            self._read_until(b">")
        try:
            self._serial.write(b"\x04")
        except (OSError, serial.SerialException) as exc:
            raise self._gone(exc) from exc
        data = self._read_until(b"soft reboot\r\n")
        data += self._read_until(RAW_BANNER)
        if not data.endswith(RAW_BANNER):
            raise BoardTimeout(f"{self.port}: no raw REPL after a soft reset")
        self._at_prompt = False

    def fresh(self) -> None:
        """A soft reset in the raw REPL (main.py does not run): a clean heap for a heavy step such as key
        generation or a seal, which on a 100 KB board must not share the heap with earlier commands."""
        self._soft_reset()
        self._run(AGENT, self.timeout_s)

    def _gone(self, exc: BaseException) -> ProvisionError:
        if ports.is_url(self.port) or os.path.exists(self.port):
            return BoardTimeout(f"{self.port}: the connection failed ({exc})")
        return BoardGone(f"{self.port} vanished ({exc}): the board was unplugged or reset into another mode")

    # -- running code ----------------------------------------------------------------------------------------
    def _run(self, code: str, timeout_s: float) -> bytes:
        t = self.transport
        if t is None:
            raise ProvisionError("the board is not open")
        try:
            self._send(code.encode())
            out, err = self._follow(timeout_s)
        except (OSError, serial.SerialException) as exc:
            raise self._gone(exc) from exc
        except (TransportError, struct.error) as exc:
            if not (ports.is_url(self.port) or os.path.exists(self.port)):
                raise self._gone(exc) from exc
            raise BoardTimeout(f"{self.port}: the board stopped answering ({exc or 'timeout'})") from exc
        self._log_traffic(code, out, err)
        if err:
            text = err.decode(errors="replace").strip()
            error = DeviceError(f"{self.port}: the board raised {text.splitlines()[-1] if text else '?'}")
            error.device_traceback = text
            raise error
        return out

    def _log_traffic(self, code: str, out: bytes, err: bytes) -> None:
        if not traffic.isEnabledFor(logging.DEBUG):
            return
        bulk = _BULK.match(code)
        if bulk:  # file contents (a config with its passwords): their size only
            traffic.debug("%s > %s(...) [%d bytes]", self.port, bulk.group(1), len(code))
            traffic.debug("%s < [%d bytes]", self.port, len(out))
            return
        shown = code if len(code) <= TRAFFIC_CHARS else code[:TRAFFIC_CHARS] + f"... [{len(code)} chars]"
        traffic.debug("%s > %s", self.port, shown)
        traffic.debug("%s < %r", self.port, out[:TRAFFIC_CHARS] + err[:TRAFFIC_CHARS])

    def _follow(self, timeout_s: float) -> tuple[bytes, bytes]:
        """The command's output and error output (each ends with Ctrl-D). Reads in blocks, not byte by byte
        as mpremote does: a pty (virtual boards) drops output that is not read fast enough."""
        s = self._serial
        data = bytearray()
        last = time.monotonic()
        give_up = last + 10 * timeout_s  # a board printing without end must not hold us forever
        while data.count(b"\x04") < 2:
            if time.monotonic() > give_up:
                raise TransportError(f"the command did not end within {10 * timeout_s:g} s")
            block = s.read(max(1, s.in_waiting))
            if block:
                data += block
                last = time.monotonic()
            elif time.monotonic() - last > timeout_s:
                raise TransportError(f"no output for {timeout_s:g} s")
        out, err, rest = bytes(data).split(b"\x04", 2)
        if rest.strip(b">"):
            log.debug("%s: unexpected bytes after a command: %r", self.port, rest[:100])
        self._at_prompt = rest.startswith(b">")
        return out, err

    def _send(self, code: bytes) -> None:
        """Hand one command to the raw REPL: raw-paste (mpremote's flow-controlled writer) when the board
        has it, else the plain raw REPL. Our own prompt bookkeeping, because _follow reads in blocks."""
        t = self.transport
        assert t is not None
        s = t.serial
        if not self._at_prompt:
            data = self._read_until(b">")
            if not data.endswith(b">"):
                raise TransportError("no raw REPL prompt")
        self._at_prompt = False
        if t.use_raw_paste:
            s.write(b"\x05A\x01")
            reply = s.read(2)
            if reply == b"R\x01":
                t.raw_paste_write(code)
                return
            t.use_raw_paste = False
            if reply != b"R\x00":  # a board without raw-paste echoes the bytes and prints the banner again
                self._read_until(RAW_BANNER + b">")
        for i in range(0, len(code), 256):
            s.write(code[i : i + 256])
            time.sleep(0.01)
        s.write(b"\x04")
        if s.read(2) != b"OK":
            raise TransportError("the board did not accept the command")

    def exec(self, code: str, timeout_s: float | None = None) -> str:
        """Run code in the raw REPL; return what it printed. DeviceError carries the device's traceback."""
        return self._run(code, self.timeout_s if timeout_s is None else timeout_s).decode(errors="replace")

    def call(self, code: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Run code that prints one `PINSEAL {json}` line (the firmware's and the agent's answers)."""
        out = self._run(code, self.timeout_s if timeout_s is None else timeout_s)
        found = ANSWER.findall(out)
        if not found:
            raise DeviceError(f"{self.port}: no answer line from the board; it printed {out[-200:]!r}")
        try:
            value = json.loads(found[-1])
        except ValueError as exc:
            raise DeviceError(f"{self.port}: unreadable answer {found[-1][:200]!r}") from exc
        if not isinstance(value, dict):
            raise DeviceError(f"{self.port}: unexpected answer {value!r}")
        return value

    # -- system and files ------------------------------------------------------------------------------------
    def system(self) -> BoardSystem:
        answer = self.call("_ps_sys()")
        return BoardSystem(str(answer["micropython"]), str(answer["platform"]), int(answer["mpy"]))

    def hashes(self, paths: Iterable[str]) -> dict[str, str | None]:
        """SHA-256 (hex) of each path as the device reads it; None where there is no such file."""
        paths = list(paths)
        out: dict[str, str | None] = {}
        for i in range(0, len(paths), HASHES_PER_CALL):  # keep each command and answer small
            out.update(self.call(f"_ps_hashes({paths[i : i + HASHES_PER_CALL]!r})")["hashes"])
        return out

    def write_file(self, path: str, data: bytes, progress: Callable[[int], None] | None = None) -> str:
        """Write through `path + TMP_SUFFIX` and rename, so a cut leaves the old file or the new one.
        Returns the SHA-256 the device computed over the file it now has."""
        tmp = path + TMP_SUFFIX
        self.exec(f"_ps_open({tmp!r})")
        for i in range(0, len(data), WRITE_CHUNK_BYTES):
            chunk = data[i : i + WRITE_CHUNK_BYTES]
            self.exec(f"_ps_w({base64.b64encode(chunk)!r})")
            if progress is not None:
                progress(len(chunk))
        return str(self.call(f"_ps_commit({tmp!r}, {path!r})")["sha"])

    def read_file(self, path: str) -> bytes | None:
        """A file's bytes, or None if it does not exist."""
        if self.hashes([path])[path] is None:
            return None
        data = bytearray()
        while True:  # in pieces: one answer must fit what a pty buffers (~18 KB) if the host is slow to read
            out = self._run(f"_ps_read({path!r}, {len(data)}, {READ_CHUNK_BYTES})", self.timeout_s)
            piece = bytes.fromhex(out.decode().strip())
            data += piece
            if len(piece) < READ_CHUNK_BYTES:
                return bytes(data)

    def remove(self, paths: Iterable[str]) -> list[str]:
        return list(self.call(f"_ps_rm({list(paths)!r})")["removed"])

    def list_files(self, folder: str = "/") -> list[str]:
        return sorted(self.call(f"_ps_ls({folder!r})")["files"])
