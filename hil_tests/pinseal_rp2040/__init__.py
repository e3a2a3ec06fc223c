"""pinseal's firmware target on rp2040js: the RP2 MicroPython image on an emulated Raspberry Pi Pico.

`board` runs hil_tests/rp2040/board.mjs with the REPL (USB CDC) and UART0 (the serial transport) each on its
own pty, the profile's sensors on its I2C bus and the flash in a host file; `cli` is
`python -m pinseal_rp2040.cli` (and `pinseal-vboard --board pico`), printing `serial:` and `uart:` lines as
pinseal-vboard does, so mpremote, pinseal-provision and a gateway's serial intake work against it unchanged.
"""

from pinseal_rp2040.board import BOOTROM, UF2, Rp2040Board, Rp2040Error, Rp2040Options

__all__ = ["BOOTROM", "UF2", "Rp2040Board", "Rp2040Error", "Rp2040Options"]
