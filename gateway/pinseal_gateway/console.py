"""The `pinseal-gateway` console script: checks the 'gateway' extra, then runs the CLI.

The CLI module imports the extra's packages at its top, so a missing one would end in an ImportError
traceback; this entry point names the extra to install instead (pinseal_protocol.extras).
"""

from __future__ import annotations

from pinseal_protocol.extras import require_extra


def main() -> int:
    require_extra("gateway", "pinseal-gateway")
    from pinseal_gateway.cli import main as cli_main

    return cli_main()
