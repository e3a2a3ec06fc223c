"""Virtual boards: the unmodified firmware in the real MicroPython VM, behind a serial port
that the official tools use.

`BoardHost` runs the Node supervisor (hil_tests/vboard/board_host.mjs) that serves one or many boards;
`VirtualBoard` is one board: its pseudo-terminal, power, reset, clock and plugin controls.
"""

from pinseal_vboard.board import BoardOptions, VirtualBoard, mpremote
from pinseal_vboard.host import BoardHost
from pinseal_vboard.profiles import BOARDS_DIR, board_profile_path, load_profile

__all__ = [
    "BOARDS_DIR",
    "BoardHost",
    "BoardOptions",
    "VirtualBoard",
    "board_profile_path",
    "load_profile",
    "mpremote",
]
