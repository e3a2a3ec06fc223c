"""Errors of provisioning, classified by cause, each with what the user should do next.

A provisioning run happens at a bench, with a person in front of it: every failure has to say what went
wrong *and* what to do about it, in one or two lines, never a traceback. The CLI prints `message` and
`hint`; the library raises these so scripts and tests can tell the causes apart.
"""

from __future__ import annotations


class ProvisionError(Exception):
    """Base class: `hint` is the next step for the person at the bench."""

    exit_code = 1
    hint = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def describe(self) -> str:
        text = str(self)
        return f"{text}\n  what to do: {self.hint}" if self.hint else text


class BadInput(ProvisionError):
    """Arguments or files given to the tool are wrong (nothing was sent to a board)."""

    exit_code = 2


class PortNotFound(ProvisionError):
    """The serial port does not exist, or no board was detected."""

    hint = "check the cable and the port name (`pinseal-provision ports` lists what is connected)"


class BoardBusy(ProvisionError):
    """The board answers but does not give its REPL (main.py keeps running, or another tool holds it)."""

    hint = (
        "press the board's reset button while the tool waits (it sends Ctrl-C through the firmware's "
        "safe-mode window), or close other programs using the port (mpremote, screen, a serial monitor)"
    )


class BoardTimeout(ProvisionError):
    """The board stopped answering in the middle of a step."""

    hint = "check the cable and power, then run the same command again: it continues where it stopped"


class BoardGone(ProvisionError):
    """The serial port vanished while we used it: unplugged, reset into another mode, or powered off."""

    hint = (
        "plug the board back in and run the same command again: finished files are kept, the rest is redone"
    )


class InBootloader(ProvisionError):
    """The board is in its ROM bootloader (no MicroPython REPL)."""

    hint = "flash MicroPython with `pinseal-provision flash`, or reset the board without holding BOOT/BOOTSEL"


class VersionMismatch(ProvisionError):
    """The board runs another MicroPython release than the board profile asks for."""


class DeviceError(ProvisionError):
    """Code run on the board raised; the message carries the last line of the device's traceback."""

    hint = "run with -v to see the board's whole traceback; a board out of memory recovers after a reset"
    device_traceback = ""


class FleetKeyMissing(ProvisionError):
    """No fleet key file (or an unusable one)."""


class NotDeployed(ProvisionError):
    """The board has no (or an incomplete) pinseal firmware."""

    hint = "run `pinseal-provision deploy` first (it copies only what is missing or different)"


class AlreadyEnrolled(ProvisionError):
    """The board has a certificate and config: enrolling again would replace a working identity."""

    hint = "use `pinseal-provision status` to see it; add --force to enroll it again (the device key is kept)"


class RegistryError(ProvisionError):
    """The gateway or network registry refused or failed (its CLI's message is included)."""


class SelfTestFailed(ProvisionError):
    """The device's self-test bundle did not verify against the registered key."""

    hint = "the board is registered but not trustworthy: run `pinseal-provision revoke`, then investigate"


class FlashError(ProvisionError):
    """Writing MicroPython to the chip failed (esptool or the UF2 copy)."""


class ImageUnavailable(ProvisionError):
    """The official MicroPython image could not be downloaded (network, HTTP status, short read)."""
