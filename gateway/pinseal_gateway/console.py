"""The `pinseal-gateway` console script: checks the 'gateway' extra, then runs the CLI.

The CLI module imports the extra's packages at its top, so a missing one would end in an ImportError
traceback; this entry point names the extra to install instead (pinseal_protocol.extras).
"""

from __future__ import annotations

import sys

from pinseal_protocol.extras import print_version_if_asked, require_extra


def main() -> int:
    if print_version_if_asked("pinseal-gateway", sys.argv[1:]):
        return 0
    require_extra("gateway", "pinseal-gateway")
    from pinseal_gateway.cli import main as cli_main

    return cli_main()
