"""Put the development packages of this checkout on the venv's import path (`make setup` runs it).

pinseal_vboard, pinseal_hil, pinseal_devkit and pinseal_bench are tools for developing pinseal (the virtual
board needs Node and the repository's hil_tests/vboard): the wheel does not ship them, so they run from the
checkout. A .pth file in the venv's site-packages lists their folders, so every interpreter of the venv finds
them: pytest, `python -m pinseal_vboard.cli` (make vboard), and the subprocesses tests and `make run` start.

    python scripts/link-dev-packages.py FOLDER [FOLDER ...]
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

PTH_NAME = "pinseal-dev-packages.pth"


def main(argv: list[str]) -> int:
    folders = [Path(arg).resolve() for arg in argv]
    for folder in folders:
        if not folder.is_dir():
            print(f"link-dev-packages: no folder {folder}", file=sys.stderr)
            return 2
    pth = Path(sysconfig.get_path("purelib")) / PTH_NAME
    pth.write_text("".join(f"{folder}\n" for folder in folders))
    print(f"link-dev-packages: {pth} lists {', '.join(str(f) for f in folders)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
