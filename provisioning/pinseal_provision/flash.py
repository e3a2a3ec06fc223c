"""Writing MicroPython itself: esptool's Python API for the ESP32 family, a UF2 copy for the Pico family.

- **ESP32** (profile `micropython.format` "bin"): `esptool.cmds` (v5) as a library: detect the chip (esptool
  resets it into its ROM bootloader through DTR/RTS), check it is the profile's MCU, load the flasher stub,
  erase, write the image at the profile's `flash_offset` (0x1000 on the ESP32, 0 on the S3), hard-reset.
  esptool's own progress goes to our progress callback (a rich bar in the CLI) through its logger API.
- **Pico W / Pico 2 W** ("uf2"): the boot ROM shows a USB drive (RPI-RP2 / RP2350, with INFO_UF2.TXT); copying
  a .uf2 onto it writes the flash and reboots. To get there from a running MicroPython: `machine.bootloader()`
  over the REPL, or the "1200-baud touch" (open the CDC port at 1200 baud and close it; MicroPython's rp2
  port reboots into BOOTSEL on it), or holding BOOTSEL while plugging in. The image is checked before
  anything happens (UF2 magic numbers and family id: RP2040 0xe48bff56; RP2350 0xe48bff59 ARM-S,
  0xe48bff5a RISC-V, 0xe48bff57 absolute; `image_checks`), so a wrong file never reaches the board.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pinseal_provision.errors import FlashError, PortNotFound
from pinseal_provision.image_checks import check_bin, check_uf2

Progress = Callable[[int, int], None]

VOLUME_BOARD_IDS = {"rp2040": ("RPI-RP2",), "rp2350": ("RP2350",)}
ESP_CHIP_NAMES = {"esp32": "ESP32", "esp32s3": "ESP32-S3"}


# -- ESP32 family --------------------------------------------------------------------------------------------
class _EsptoolProgress:
    """esptool's TemplateLogger, forwarding its progress bar to ours and its text to a callback."""

    def __init__(self, progress: Progress | None, say: Callable[[str], None]) -> None:
        self.progress, self.say = progress, say

    def print(self, *args: Any, **kwargs: Any) -> None:
        text = " ".join(str(a) for a in args).strip()
        if text:
            self.say(text)

    def note(self, message: str) -> None:
        self.say(f"note: {message}")

    def warning(self, message: str) -> None:
        self.say(f"warning: {message}")

    def error(self, message: str) -> None:
        self.say(f"error: {message}")

    def stage(self, finish: bool = False) -> None:
        pass

    def progress_bar(
        self, cur_iter: int, total_iters: int, prefix: str = "", suffix: str = "", bar_length: int = 30
    ) -> None:
        if self.progress is not None:
            self.progress(cur_iter, total_iters)

    def set_verbosity(self, verbosity: str) -> None:
        pass


def flash_esp32(
    port: str,
    image: Path,
    profile: dict[str, Any],
    *,
    baud: int = 460800,
    erase: bool = True,
    progress: Progress | None = None,
    say: Callable[[str], None] = lambda s: None,
) -> None:
    """Erase and write `image` at the profile's offset with esptool.cmds (v5)."""
    check_bin(image, profile)
    offset = int(profile["micropython"]["flash_offset"])
    from esp_pylib.logger import EspLog
    from esptool import cmds
    from esptool.logger import EsptoolLogger, TemplateLogger

    class Logger(_EsptoolProgress, TemplateLogger):
        pass

    # esptool's logger is one process-wide instance: install ours for this call only, then put it back.
    previous = EspLog.instance
    EsptoolLogger.set_logger(None, Logger(progress, say))  # type: ignore[arg-type]  # self is unused
    try:
        _write_esp32(cmds, port, image, profile, offset, baud, erase, say)
    finally:
        EspLog.instance = previous


def _write_esp32(
    cmds: Any, port: str, image: Path, profile: dict[str, Any], offset: int, baud: int, erase: bool,
    say: Callable[[str], None],
) -> None:  # fmt: skip
    want = ESP_CHIP_NAMES.get(str(profile["mcu"]))
    try:
        with cmds.detect_chip(port, baud) as esp:
            if want and want != esp.CHIP_NAME:
                raise FlashError(
                    f"{port}: the chip is an {esp.CHIP_NAME}, {profile['id']} is an {want}",
                    "pick the right --board (the image for one ESP32 variant does not boot on another)",
                )
            esp = cmds.run_stub(esp)
            cmds.attach_flash(esp)
            if erase:
                say("erasing the flash (takes up to a minute)")
                cmds.erase_flash(esp)
            cmds.write_flash(esp, [(offset, str(image))])
            cmds.reset_chip(esp, "hard-reset")
    except FlashError:
        raise
    except (OSError, cmds.FatalError, cmds.SerialException) as exc:
        raise FlashError(
            f"{port}: esptool failed: {exc}",
            "hold BOOT, press EN (reset), release BOOT, and run flash again; check the cable and --baud",
        ) from exc


# -- Pico family ---------------------------------------------------------------------------------------------
def find_uf2_volume(mcu: str, candidates: list[Path] | None = None) -> Path | None:
    """A mounted boot-ROM drive: a folder with INFO_UF2.TXT naming the MCU's bootloader."""
    if candidates is None:
        candidates = []
        with contextlib.suppress(OSError):
            for line in Path("/proc/mounts").read_text().splitlines():
                parts = line.split()
                if len(parts) > 1:
                    candidates.append(Path(parts[1].replace("\\040", " ")))
        user = os.environ.get("USER", "")
        for base in (Path("/media") / user, Path("/run/media") / user, Path("/media"), Path("/Volumes")):
            with contextlib.suppress(OSError):
                candidates += [p for p in base.iterdir() if p.is_dir()]
    names = VOLUME_BOARD_IDS.get(mcu, ("RPI-RP2", "RP2350"))
    for folder in candidates:
        info = folder / "INFO_UF2.TXT"
        with contextlib.suppress(OSError):
            text = info.read_text(errors="replace")
            if any(n in text for n in names):
                return folder
    return None


def enter_bootloader(port: str) -> str:
    """Ask a running MicroPython to reboot into BOOTSEL: machine.bootloader() over the raw REPL, else the
    1200-baud touch. Returns which one was used."""
    import serial

    from pinseal_provision.device import Board

    try:
        with Board(port, interrupt_s=3, soft_reset=False) as board, contextlib.suppress(Exception):
            # the port vanishes as the board reboots: no answer comes
            board.exec("import machine\nmachine.bootloader()", timeout_s=2)
        return "machine.bootloader()"
    except Exception:
        try:
            s = serial.Serial(port, 1200)
            s.dtr = False
            s.close()
        except (OSError, serial.SerialException) as exc:
            raise PortNotFound(f"cannot reach {port} to enter the bootloader: {exc}") from exc
        return "1200-baud touch"


def flash_uf2(
    image: Path,
    profile: dict[str, Any],
    *,
    port: str | None = None,
    volume: Path | None = None,
    wait_s: float = 30.0,
    progress: Progress | None = None,
    say: Callable[[str], None] = lambda s: None,
    enter: Callable[[str], str] = enter_bootloader,
    find: Callable[[str], Path | None] = find_uf2_volume,
) -> Path:
    """Copy the image to the boot ROM's drive (putting the board in BOOTSEL first if a port is given).
    Returns the file written on the drive."""
    check_uf2(image, profile)
    mcu = str(profile["mcu"])
    target = volume or find(mcu)
    if target is None and port is not None:
        say(f"{port}: rebooting into the bootloader via {enter(port)}")
    deadline = time.monotonic() + wait_s
    while target is None and time.monotonic() < deadline:
        time.sleep(0.25)
        target = find(mcu)
    if target is None:
        raise FlashError(
            f"no {'/'.join(VOLUME_BOARD_IDS.get(mcu, ('RPI-RP2',)))} drive appeared within {wait_s:g} s",
            "hold BOOTSEL while plugging the board in, make sure the drive is mounted, or pass --volume",
        )
    dest = target / image.name
    total = image.stat().st_size
    done = 0
    try:
        with image.open("rb") as src, dest.open("wb") as out:
            while chunk := src.read(64 * 1024):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            out.flush()
            with contextlib.suppress(
                OSError
            ):  # the drive may vanish as the board reboots after the last block
                os.fsync(out.fileno())
    except OSError as exc:
        if done < total:
            raise FlashError(f"copying to {target} failed after {done} of {total} bytes: {exc}") from exc
    return dest
