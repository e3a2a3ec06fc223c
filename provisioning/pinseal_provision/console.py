"""The `pinseal-provision` console script: checks the 'provision' extra, then runs the CLI.

The CLI module imports the extra's packages at its top, so a missing one would end in an ImportError
traceback; this entry point names the extra to install instead (pinseal_protocol.extras).
"""

from __future__ import annotations

import sys

from pinseal_protocol.extras import print_version_if_asked, require_extra


def deploys() -> str:
    """What `--version` adds: the firmware this install deploys and the MicroPython it is compiled for."""
    from pinseal_build.locations import FIRMWARE_DIR
    from pinseal_build.mpy import MICROPYTHON_RELEASE
    from pinseal_provision.versions import firmware_version

    return f"deploys pinseal firmware {firmware_version(FIRMWARE_DIR)} for MicroPython {MICROPYTHON_RELEASE}"


def main() -> int:
    if print_version_if_asked("pinseal-provision", sys.argv[1:], deploys()):
        return 0
    require_extra("provision", "pinseal-provision")
    from pinseal_provision.cli import main as cli_main

    return cli_main()
