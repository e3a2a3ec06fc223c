"""firmware/package.json: the firmware as a package `mpremote mip install` understands.

    mpremote mip install --target / firmware/package.json            (from a checkout)
    mpremote mip install --target / github:<owner>/<repo>/firmware/package.json

Every file of the firmware (pinseal_build.firmware_files) is listed with a relative URL, so the same file
serves a checkout and a GitHub install; --target / puts main.py and boot.py at the root, as a board runs them.
`python -m pinseal_build.firmware_package` rewrites it; a test checks it lists exactly the files there are.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pinseal_build import firmware_files as files
from pinseal_build.locations import FIRMWARE_DIR

PACKAGE_JSON = FIRMWARE_DIR / "package.json"


def firmware_files(root: Path = FIRMWARE_DIR) -> list[str]:
    """The files package.json lists: the firmware's file list, as paths on the board."""
    return files.names(root)


def firmware_version(root: Path = FIRMWARE_DIR) -> str | None:
    """`FIRMWARE` in pinseal/version.py, read as text (the host never imports firmware code); None when
    the file or the line is missing."""
    try:
        text = (root / "pinseal" / "version.py").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("FIRMWARE"):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def package(root: Path = FIRMWARE_DIR) -> dict[str, Any]:
    version = firmware_version(root) or "0.0.0"
    return {"urls": [[name, name] for name in firmware_files(root)], "version": version}


def render(root: Path = FIRMWARE_DIR) -> str:
    return json.dumps(package(root), indent=2) + "\n"


def main() -> int:
    PACKAGE_JSON.write_text(render())
    print(f"wrote {PACKAGE_JSON} ({len(package()['urls'])} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
