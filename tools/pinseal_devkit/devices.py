"""Virtual boards running the real firmware as devices of a local stack (pinseal_devkit.stack).

What an owner's provisioning does, reduced to what the firmware tests need: the board makes its key (over
its serial REPL, with mpremote), the gateway registers the public key and issues the MQTT password, and
/config.json + /board.json go onto the board's flash. The provisioning tool (provisioning/) does the same
with certificates, checks and reports; these tests exercise the firmware, not that tool.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pinseal_devkit.stack import Stack
from pinseal_vboard import BoardHost, BoardOptions, VirtualBoard, board_profile_path
from pinseal_vboard import mpremote as run_mpremote

# The Wi-Fi network a virtual board can join by default (hil_tests/vboard/net/settings.mjs).
VBOARD_SSID = "vboard-wifi"
VBOARD_WIFI_PASSWORD = "vboard-pass"
INFO_LINE = re.compile(r"^PINSEAL (\{.*\})\s*$", re.MULTILINE)


def mpremote(port: str, *args: str, timeout: float = 60) -> str:
    """mpremote's output; RuntimeError when it failed."""
    proc = run_mpremote(port, *args, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"mpremote {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return proc.stdout


def device_info(output: str) -> dict[str, Any]:
    found = INFO_LINE.findall(output)
    if not found:
        raise RuntimeError(f"no PINSEAL line in: {output!r}")
    return json.loads(found[-1])


def device_config(stack: Stack, password: str, **overrides: dict[str, Any]) -> dict[str, Any]:
    """A /config.json for a board on this machine's stack (docs/firmware.md, "Configuration")."""
    cfg: dict[str, Any] = {
        "version": 1,
        "wifi": {"ssid": VBOARD_SSID, "password": VBOARD_WIFI_PASSWORD},
        "mqtt": {"host": "127.0.0.1", "port": stack.mqtt_port, "password": password, "keepalive_s": 30},
        "gateway": {"public_key": stack.gateway_public_key.hex()},
        "sampling": {"interval_s": 1},
        "bundling": {"readings": 4, "max_wait_s": 10},
        "time": {"ntp": False},
        "safe_mode": {"window_s": 0},
    }
    for section, values in overrides.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def enroll(board: VirtualBoard) -> dict[str, Any]:
    """Make the board create its key; returns what it reports (public key, key id, ...)."""
    out = mpremote(
        board.serial_path,
        "exec",
        "import asyncio; from pinseal import enroll; asyncio.run(enroll.create_key())",
    )
    return device_info(out)


def start_device(
    host: BoardHost,
    stack: Stack,
    flash: Path,
    board: str = "esp32_devkitc",
    label: str = "test",
    register: bool = True,
    romfs: bool = True,
    mpy: bool = False,
    ram_bytes: int | None = None,
    ram_ceiling_bytes: int | None = None,
    net: Path | None = None,
    **config_overrides: dict[str, Any],
) -> tuple[VirtualBoard, dict[str, Any]]:
    """A board with the firmware, enrolled and registered, its config written, reset into the application.

    The broker reads the registry when it starts: start (or restart) it after registering. romfs=False: the
    package goes on the filesystem, as .mpy files with mpy=True (a stock image, `deploy --no-romfs`). net: the
    network plugin's settings file (e.g. the broker refusing connections from the start).
    """
    options = BoardOptions(
        board=board,
        flash_dir=flash,
        firmware_in_romfs=romfs,
        firmware_as_mpy=mpy,
        ram_bytes=ram_bytes,
        ram_ceiling_bytes=ram_ceiling_bytes,
        net=net,
    )
    vb = VirtualBoard(options, host=host).start()
    vb.wait_for_output(b">>> ")
    info = enroll(vb)
    (flash / "board.json").write_text(board_profile_path(board).read_text())
    password = stack.register_device(info["public_key"], label, 1) if register else "unregistered"
    (flash / "config.json").write_text(json.dumps(device_config(stack, password, **config_overrides)))
    return vb, info
