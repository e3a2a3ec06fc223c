"""The one build step pyproject.toml cannot declare: ship the firmware, the board profiles and the dashboard's
plotting library (uPlot, from node_modules) in the wheel.

They live at the top of the repository (firmware/ is exactly what a board runs, boards/ is shared with the
virtual board and Wokwi), outside every import package, and setuptools packages only what is inside one. This
copies them into pinseal_build (where pinseal_build.locations looks first) when a wheel is built, taking the
firmware's files from pinseal_build.firmware_files so the wheel ships exactly what deploy puts on a board.
An editable install skips it: there locations finds the checkout's folders.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))
from pinseal_build import firmware_files  # noqa: E402  (stdlib only: importable before dependencies)

UPLOT_FILES = ("uPlot.iife.min.js", "uPlot.min.css")  # pinseal_gateway.http.dashboard.UPLOT_FILES


class BuildPyWithFirmware(build_py):
    """build_py, then firmware/ and boards/ into pinseal_build and uPlot into the dashboard's static files."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "pinseal_build"
        firmware = ROOT / "firmware"
        for src in [*firmware_files.sources(firmware), firmware / "package.json"]:
            self._copy(src, target / "firmware" / src.relative_to(firmware))
        boards = ROOT / "boards"
        for src in [boards / "schema.json", *sorted(boards.glob("*/board.json"))]:
            self._copy(src, target / "boards" / src.relative_to(boards))
        # The dashboard's plotting library, from npm (`npm ci`): a wheel serves it without node_modules.
        uplot = ROOT / "node_modules" / "uplot" / "dist"
        vendor = Path(self.build_lib) / "pinseal_gateway" / "http" / "static" / "vendor"
        missing = [name for name in UPLOT_FILES if not (uplot / name).is_file()]
        if missing:
            # A gateway built without them still runs and serves every table; its dashboard says how to get
            # the plots. Failing here would make Node a requirement of `pipx install` from a fresh clone.
            print(
                f"warning: {uplot} has no {', '.join(missing)}: the dashboard of this build has no plots "
                "(run `npm ci` or `make setup` first to include them)",
                file=sys.stderr,
            )
            return
        for name in UPLOT_FILES:
            self._copy(uplot / name, vendor / name)

    @staticmethod
    def _copy(src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


setup(cmdclass={"build_py": BuildPyWithFirmware})
