"""One virtual board: start it, reach its serial port, cut its power, reset it, wait for what it prints.

Tests and `pinseal-vboard` use this API. The board runs in a BoardHost (its own, or one shared by a fleet);
its flash is a host folder that outlives it, so a restart or a new VirtualBoard on the same folder boots
with what the firmware had written.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pinseal_build import firmware_files, mpy
from pinseal_build.romfs_image import build_image
from pinseal_vboard.host import BoardHost
from pinseal_vboard.profiles import board_profile_path, load_profile
from pinseal_vboard.serial_pty import SerialPty
from pinseal_vboard.vm import FIRMWARE_DIR, REPO

VBOARD_DIR = REPO / "hil_tests" / "vboard"
SENSORS_PLUGIN = VBOARD_DIR / "sensors.mjs"
ROMFS_PLUGIN = VBOARD_DIR / "romfs.mjs"
NET_PLUGIN = VBOARD_DIR / "net.mjs"
UART_PLUGIN = VBOARD_DIR / "uart.mjs"
RADIO_PLUGIN = VBOARD_DIR / "radio.mjs"
# What a board prints once its REPL waits for input.
FRIENDLY_PROMPT = b">>> "
RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"


class BoardError(RuntimeError):
    """The board did not do what was asked in time; the message says what it printed last."""


@dataclass
class BoardOptions:
    """How to start a board.

    firmware: a folder copied onto the flash at start (None: leave the flash as it is, e.g. a blank board).
    firmware_in_romfs: put the firmware's package in the board's ROMFS partition as .mpy (what
        `mpremote romfs deploy` does; modules there execute in place and take no heap for their code), and
        only main.py and boot.py on the flash. Needs a profile with micropython.romfs_bytes.
    firmware_as_mpy: (without ROMFS) put the package modules on the flash compiled by mpy-cross, as
        `pinseal-provision deploy --no-romfs` does on a stock MicroPython image; main.py and boot.py stay .py.
        Their bytecode is loaded into the heap, but nothing is compiled on the board.
    romfs_image: the host file holding the ROMFS partition (default: "<flash>.romfs", beside the flash).
    romfs_partition: False models the official MicroPython image people download: it has no ROMFS
        partition (no `vfs.rom_ioctl`), whatever the profile's romfs_bytes (those describe pinseal's builds).
    sensors: a sensors script (docs/virtual-board.md, "Sensors"); None: the plugin's defaults.
    net: the network plugin's settings file; None: its defaults (Wi-Fi up, localhost reachable).
    ram_ceiling_bytes: the RAM model's hard ceiling (live bytes + one step's garbage, which this VM collects
        only between steps); default 4 x RAM. RAM + 16 KiB is the aim of issue 13, but the firmware's crypto
        still makes up to ~160 KB of garbage in one step (a synchronous SHA-512 block; ~28 KB per comb step).
    hang_s: reset a board whose VM has not returned to its event loop for this long (0: never).
    rtc: "unset" (a board's RTC starts at 2000-01-01 after power-on) or "host" (starts at the host's time).
    """

    board: str = "esp32_devkitc"
    flash_dir: Path | None = None
    firmware: Path | None = FIRMWARE_DIR
    firmware_in_romfs: bool = False
    firmware_as_mpy: bool = False
    romfs_image: Path | None = None
    romfs_partition: bool = True
    sensors: Path | None = None
    net: Path | None = None
    ram_bytes: int | None = None
    ram_ceiling_bytes: int | None = None
    hang_s: float = 20.0
    rtc: str = "unset"
    extra_plugins: list[str] = field(default_factory=list)


_ids = itertools.count(1)


def mpremote(port: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The official tool, unchanged, against a board's serial port: `mpremote connect PORT ARGS...`."""
    return subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def install_firmware(
    firmware: Path,
    flash_dir: Path,
    only_top: bool = False,
    mpy_arch: str | None = None,
    as_mpy: bool = False,
    mpy_opt: int = 0,
) -> None:
    """Copy a firmware tree onto the flash (what `mpremote cp -r` or the provisioning tool would do);
    only_top: just the files at its top (main.py, boot.py). as_mpy: package modules compiled with mpy-cross
    (`mpy_arch`, `mpy_opt`: the profile's -march and -O, as deploy uses), entry points as .py; a source
    or compiled copy of the other kind left by an earlier install is removed, since MicroPython imports
    `x.py` before `x.mpy`."""
    for src in firmware.rglob("*"):
        rel = src.relative_to(firmware)
        if "__pycache__" in rel.parts or any(part.startswith(".") for part in rel.parts):
            continue
        if only_top and (len(rel.parts) > 1 or src.is_dir()):
            continue
        if src.is_file() and src.suffix != ".py":  # e.g. package.json: for tools, not for the board
            continue
        dst = flash_dir / rel
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
        elif as_mpy and not firmware_files.is_entry_point(rel.as_posix()):
            dst.unlink(missing_ok=True)
            mpy.compile_file(src, dst.with_suffix(".mpy"), rel.as_posix(), mpy_arch, mpy_opt)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.with_suffix(".mpy").unlink(missing_ok=True)
            shutil.copyfile(src, dst)


class VirtualBoard:
    """A board served by `host` (a new private host when None)."""

    def __init__(
        self, options: BoardOptions, host: BoardHost | None = None, tmp_root: Path | None = None
    ) -> None:
        self.options = options
        self.id = f"board{next(_ids)}"
        self._own_host = host is None
        self.host = host or BoardHost()
        if options.flash_dir is None:
            root = tmp_root or (REPO / "build" / "vboard")
            options.flash_dir = root / f"{options.board}-{self.id}" / "flash"
        self.flash_dir = Path(options.flash_dir).resolve()
        self.romfs_image = Path(options.romfs_image or f"{self.flash_dir}.romfs").resolve()
        self.profile_path = board_profile_path(options.board)
        self.output = bytearray()
        self.logs: list[str] = []
        self.state = "off"
        self.reset_cause: int | None = None
        self.boots = 0
        self._cond = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._req = itertools.count(1)
        self.pty: SerialPty | None = None
        self.uart_pty: SerialPty | None = None  # the profile's UART: the serial link's line, not the REPL
        self.on_radio: Any = None
        """Called (in the host's reader thread) with each request the firmware makes of its BLE stack
        (pinseal_vboard.radio plays them on an emulated adapter); None: the radio is out of range of all."""

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self, wait: bool = True, timeout_s: float = 30.0) -> VirtualBoard:
        self.flash_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # it will hold the device key
        if self.options.firmware is not None:
            firmware = Path(self.options.firmware)
            if self.options.firmware_in_romfs:
                if not self.options.romfs_partition:
                    raise BoardError("firmware_in_romfs needs a ROMFS partition (romfs_partition=True)")
                self.romfs_image.write_bytes(build_image(firmware))
                self.romfs_image.chmod(0o600)
            profile = load_profile(self.options.board)
            install_firmware(
                firmware,
                self.flash_dir,
                only_top=self.options.firmware_in_romfs,
                mpy_arch=mpy.MPY_ARCH.get(str(profile.get("mcu"))),
                as_mpy=self.options.firmware_as_mpy,
                mpy_opt=mpy.opt_level(profile),
            )
        self.pty = SerialPty(lambda data: self.host.send_serial(self.id, data))
        self.uart_pty = SerialPty(lambda data: self.host.send_uart(self.id, data))
        self.host.register(self.id, self._on_event)
        self.host.send(
            op="start",
            id=self.id,
            board=str(self.profile_path),
            flash=str(self.flash_dir),
            plugins=self._plugins(),
            hang_s=self.options.hang_s,
            rtc=self.options.rtc,
            **({"ram": self.options.ram_bytes} if self.options.ram_bytes else {}),
            **({"ram_ceiling": self.options.ram_ceiling_bytes} if self.options.ram_ceiling_bytes else {}),
        )
        if wait:
            self.wait_state("running", timeout_s)
        return self

    def _plugins(self) -> list[str]:
        plugins = [f"{ROMFS_PLUGIN}={self.romfs_image}"] if self.options.romfs_partition else []
        if SENSORS_PLUGIN.exists():
            plugins.append(
                f"{SENSORS_PLUGIN}={self.options.sensors}" if self.options.sensors else str(SENSORS_PLUGIN)
            )
        if NET_PLUGIN.exists():
            plugins.append(f"{NET_PLUGIN}={self.options.net}" if self.options.net else str(NET_PLUGIN))
        plugins += [str(UART_PLUGIN), str(RADIO_PLUGIN)]
        return plugins + list(self.options.extra_plugins)

    @property
    def serial_path(self) -> str:
        if self.pty is None:
            raise BoardError("the board has not been started")
        return self.pty.path

    @property
    def uart_path(self) -> str:
        """The pty of the board's wired UART (profile "uart"): where a gateway's serial intake reads."""
        if self.uart_pty is None:
            raise BoardError("the board has not been started")
        return self.uart_pty.path

    def power_cut(self, tear: bool = False) -> None:
        """Pull the power. tear: the flash write in progress lands only in part (if one comes within 2 s)."""
        self._command_and_wait_state("off", op="power", on=False, tear=tear)

    def power_on(self, timeout_s: float = 30.0) -> None:
        self._command_and_wait_state("running", timeout_s, op="power", on=True)

    def restart(self, timeout_s: float = 30.0) -> None:
        """Power cycle: what was closed or flushed on the flash is there; RAM, RTC and clock are not."""
        self.power_cut()
        self.power_on(timeout_s)

    def reset(self, timeout_s: float = 30.0) -> None:
        """The reset button."""
        boots = self.boots
        self.host.send(op="reset", id=self.id)
        self.wait_for(lambda: self.boots > boots and self.state == "running", timeout_s, "a reset")

    def stop(self) -> None:
        if self.state != "gone":
            with contextlib.suppress(RuntimeError):  # the host is gone already
                self.host.send(op="stop", id=self.id)
            self.wait_for(lambda: self.state == "off", 10, "the board to stop", raise_on_timeout=False)
        self.host.unregister(self.id)
        for pty in (self.pty, self.uart_pty):
            if pty is not None:
                pty.close()
        if self._own_host:
            self.host.close()
        self.state = "gone"

    def __enter__(self) -> VirtualBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- controls --------------------------------------------------------------------------------------------
    def control(self, plugin: str, msg: dict[str, Any], timeout_s: float = 10.0) -> Any:
        """Change a plugin's state while the board runs (sensor values and faults, network faults)."""
        req = next(self._req)
        self.host.send(op="control", id=self.id, req=req, plugin=plugin, msg=msg)
        self.wait_for(lambda: req in self._replies, timeout_s, f"the {plugin} plugin to answer")
        reply = self._replies.pop(req)
        if reply.get("error"):
            raise BoardError(f"{plugin}: {reply['error']}")
        return reply.get("result")

    def ram_stats(self, timeout_s: float = 10.0) -> dict[str, int]:
        """The RAM model's figures for this boot: live and peak bytes (above the emulation's baseline),
        steps, steps over the RAM, and the RAM modelled."""
        req = next(self._req)
        self.host.send(op="stats", id=self.id, req=req)
        self.wait_for(lambda: req in self._replies, timeout_s, "RAM figures")
        return self._replies.pop(req).get("result") or {}

    def clock(
        self, *, jump_ms: float | None = None, set_wall_ms: float | None = None, speed: float | None = None
    ) -> None:
        """Jump or set the board's wall clock, or run its clocks faster than the host's."""
        args = {
            k: v
            for k, v in (("jump_ms", jump_ms), ("set_wall_ms", set_wall_ms), ("speed", speed))
            if v is not None
        }
        self.host.send(op="clock", id=self.id, **args)

    def radio_event(self, **event: Any) -> None:
        """Something happened over the air (a central connected, wrote, exchanged the MTU, went away)."""
        self.host.send(op="ble", id=self.id, ev=event)

    def write(self, data: bytes) -> None:
        """Type on the serial line (without a pty client)."""
        self.host.send_serial(self.id, data)

    # -- output ----------------------------------------------------------------------------------------------
    def mark(self) -> int:
        """A position in the output; wait_for_output(after=mark) looks only at what came after it."""
        with self._cond:
            return len(self.output)

    def wait_for_output(
        self, pattern: bytes | str, timeout_s: float = 30.0, after: int = 0
    ) -> re.Match[bytes]:
        """Wait until the serial output (from `after`) matches regex `pattern` ("." matches newlines)."""
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern, re.DOTALL)
        found: list[re.Match[bytes]] = []

        def matched() -> bool:
            m = rx.search(self.output, after)
            if m:
                found.append(m)
            return m is not None

        self.wait_for(matched, timeout_s, f"output matching {rx.pattern!r}")
        return found[0]

    def text(self, after: int = 0) -> str:
        with self._cond:
            return self.output[after:].decode(errors="replace")

    def wait_state(self, state: str, timeout_s: float = 30.0) -> None:
        self.wait_for(lambda: self.state == state, timeout_s, f"state {state!r}")

    def wait_for(self, predicate: Any, timeout_s: float, what: str, raise_on_timeout: bool = True) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    if not raise_on_timeout:
                        return False
                    tail = self.output[-600:].decode(errors="replace")
                    raise BoardError(
                        f"{self.options.board} ({self.id}): no {what} within {timeout_s:g} s; "
                        f"state {self.state}; "
                        f"last output:\n{tail}\nlog: {self.logs[-5:]}"
                    )
                self._cond.wait(min(left, 0.5))
        return True

    def _command_and_wait_state(self, state: str, timeout_s: float = 30.0, **command: Any) -> None:
        boots = self.boots
        self.host.send(id=self.id, **command)
        if state == "running":
            self.wait_for(lambda: self.boots > boots and self.state == "running", timeout_s, f"state {state}")
        else:
            self.wait_state(state, timeout_s)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("ev")
        with self._cond:
            if kind == "serial":
                data = base64.b64decode(event["b64"])
                self.output += data
                if self.pty is not None:
                    self.pty.write(data)
            elif kind == "uart":
                if self.uart_pty is not None:
                    self.uart_pty.write(base64.b64decode(event["b64"]))
            elif kind == "ble":
                if self.on_radio is not None:
                    self.on_radio(event["msg"])
            elif kind == "state":
                self.state = event["state"]
                if self.state == "booting":
                    self.boots += 1
                    self.reset_cause = event.get("cause")
            elif kind == "log":
                self.logs.append(event["text"])
            elif kind == "reply":
                self._replies[event["req"]] = event
            self._cond.notify_all()

    def describe(self) -> str:
        return json.dumps(
            {
                "board": self.options.board,
                "serial": self.pty.path if self.pty else None,
                "uart": self.uart_pty.path if self.uart_pty else None,
                "flash": str(self.flash_dir),
            }
        )
