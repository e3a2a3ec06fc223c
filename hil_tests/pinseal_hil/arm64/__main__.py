"""`make hil-arm64`: the gateway installed on a Raspberry Pi's CPU, and its gateway, protocol and ingest
tests run there, against the tree's own (arm64) Mosquitto.

    python -m pinseal_hil.arm64 [--tree DIR] [--results DIR] [-- PYTEST ARGS]

The tree (debian_tree.py) and its venv are kept between runs and rebuilt when their recipe changes (the
Debian packages; constraints.txt, pyproject.toml and setup.py for the venv); the sources are copied afresh
each run. The venv holds an editable install of the checkout's copy, as `make setup` makes on the host, so
the tests find the repository's vectors and packaging files; the install test among them
(test_gateway_install) installs a real wheel into a fresh venv on arm64 as an owner would.
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pinseal_build.locations import BUILD_DIR, CHECKOUT
from pinseal_devkit import runlock
from pinseal_hil.arm64 import debian_tree, namespace

TESTS = ("gateway/tests", "protocol/tests", "ingest/tests")
# Inside the tree: the sources, their venv, the results.
SRC, VENV, RESULTS = "/opt/pinseal/src", "/opt/pinseal/venv", "/opt/pinseal/results"
VENV_INPUTS = ("constraints.txt", "pyproject.toml", "setup.py")
VENV_STAMP = ".pinseal-venv"
# The gateway's and the ingest's extras (what a Raspberry Pi gateway installs) and what the tests need:
# pytest and its plugins (pytest-xdist spreads the tests over every core, since qemu-user runs each
# process on one), hypothesis, and cobs, the reference the serial frame tests hold the codec to.
INSTALL = f"-e {SRC}[gateway,ingest] pytest pytest-timeout pytest-xdist hypothesis cobs"
# The development packages the tests import (pinseal_devkit: simulated devices, vectors; pinseal_hil).
DEV_PACKAGE_DIRS = ("tools", "hil_tests")
# Not copied: the checkout's own environments and output (at its top only: node_modules/uplot/dist is the
# dashboard's plotting library) and caches anywhere.
TOP_LEVEL_ONLY = {".git", ".venv", "build", "dist"}
CACHES = shutil.ignore_patterns("*.egg-info", "__pycache__", ".*_cache", ".hypothesis")


def not_sources(folder: str, names: list[str]) -> set[str]:
    ignored = set(CACHES(folder, names))
    if Path(folder) == CHECKOUT:
        ignored |= TOP_LEVEL_ONLY.intersection(names)
    return ignored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pinseal_hil.arm64",
        description="Install the gateway in an arm64 Debian tree (a Raspberry Pi's CPU, under qemu-user) and "
        "run its gateway, protocol and ingest tests there. Runs as root; needs debootstrap and "
        "qemu-user-static (make hil-arm64 installs them).",
        epilog="example: python -m pinseal_hil.arm64 -- gateway/tests/test_gateway_install.py -k install",
    )
    tree = BUILD_DIR / "arm64" / debian_tree.SUITE
    parser.add_argument("--tree", type=Path, default=tree, help=f"where the tree is kept (default {tree})")
    results = BUILD_DIR / "test-results"
    parser.add_argument(
        "--results", type=Path, default=results, help=f"JUnit XML and the log go here (default {results})"
    )
    parser.add_argument(
        "pytest_args",
        nargs="*",
        help="pytest arguments after --, instead of the gateway, protocol and ingest tests",
    )
    args = parser.parse_args(argv)
    root: Path = args.tree.resolve()
    try:  # a second run would delete the first one's sources and venv under it
        lock = runlock.lock_state_folder(
            root.parent, "make hil-arm64", "give this one its own tree with --tree"
        )
    except runlock.FolderBusy as err:
        print(f"hil-arm64: {err}", file=sys.stderr)
        return 2
    with lock:
        try:
            namespace.check_host()
        except namespace.NamespaceError as err:
            print(f"hil-arm64: {err}", file=sys.stderr)
            return 2
        return run(root, args.results, args.pytest_args or list(TESTS))


def run(root: Path, results: Path, selection: list[str]) -> int:
    """Tree, install, tests; the exit status of the tests (1 if the tree or the install failed)."""
    results.mkdir(parents=True, exist_ok=True)
    log = results / "hil-arm64.log"
    log.write_text("")
    phases: list[tuple[str, float]] = []

    def phase(name: str, started: float) -> None:
        phases.append((name, time.monotonic() - started))

    try:
        started = time.monotonic()
        debian_tree.ensure(root, log)
        phase("tree", started)
        started = time.monotonic()
        copy_sources(root)
        ensure_venv(root, log)
        phase("install", started)
    except RuntimeError as err:
        print(f"hil-arm64: {err}", file=sys.stderr)
        return 1
    started = time.monotonic()
    status = run_tests(root, selection, results)
    phase("tests", started)
    summary = ", ".join(f"{name} {seconds / 60:.1f} min" for name, seconds in phases)
    print(f"hil-arm64: {'passed' if status == 0 else f'FAILED ({status})'}; {summary}; log {log}")
    return status


def copy_sources(root: Path) -> None:
    """The checkout's sources (no venv, build output or caches) at SRC, replacing the last run's copy."""
    target = root / SRC.lstrip("/")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(CHECKOUT, target, ignore=not_sources, symlinks=True)


def ensure_venv(root: Path, log: Path) -> None:
    """The venv at VENV, made with the tree's python3 and pip from PyPI, unless its inputs are unchanged."""
    venv = root / VENV.lstrip("/")
    digest = hashlib.sha256(INSTALL.encode())
    for name in VENV_INPUTS:
        digest.update((CHECKOUT / name).read_bytes())
    stamp = venv / VENV_STAMP
    if stamp.is_file() and stamp.read_text() == digest.hexdigest():
        # the editable install points at SRC, which copy_sources refreshed; only the dev paths are rewritten
        in_tree(root, link_dev_packages(), log, "the development packages on the venv's path")
        return
    if venv.exists():
        shutil.rmtree(venv)
    script = (
        f"python3 -m venv {VENV} && {VENV}/bin/python -m pip install --quiet --upgrade pip==25.3 && "
        f"{VENV}/bin/python -m pip install --quiet -c {SRC}/constraints.txt {INSTALL} && "
        f"{link_dev_packages()}"
    )
    in_tree(root, script, log, "the venv: pinseal[gateway,ingest] and pytest (arm64 wheels from PyPI)")
    stamp.write_text(digest.hexdigest())


def link_dev_packages() -> str:
    folders = " ".join(f"{SRC}/{name}" for name in DEV_PACKAGE_DIRS)
    return f"{VENV}/bin/python {SRC}/scripts/link-dev-packages.py {folders}"


def run_tests(root: Path, selection: list[str], results: Path) -> int:
    """pytest inside the tree; its output goes to this console, its JUnit XML to results/."""
    junit = f"{RESULTS}/junit-arm64.xml"
    pytest = shlex.join(
        [
            f"{VENV}/bin/python",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            "auto",
            "--durations=15",
            *selection,
        ]
    )
    script = (
        f"mkdir -p {RESULTS} && cd {SRC} && "
        f'echo "hil-arm64: $(uname -m), $({VENV}/bin/python -V), $(/usr/sbin/mosquitto -h | head -1)" && '
        f"exec {pytest} --junitxml={junit}"
    )
    print(f"hil-arm64: {' '.join(selection)} on arm64", flush=True)
    produced, kept = root / junit.lstrip("/"), results / "junit-arm64.xml"
    for stale in (produced, kept):  # a run that ends before pytest writes must not pass off the last one's
        stale.unlink(missing_ok=True)
    cmd = debian_tree.in_tree_command(root, ["/bin/sh", "-c", script])
    status = subprocess.run(cmd, check=False).returncode
    if produced.is_file():
        shutil.copyfile(produced, kept)
    return status


def in_tree(root: Path, script: str, log: Path, what: str) -> None:
    debian_tree.run_logged(debian_tree.in_tree_command(root, ["/bin/sh", "-c", script]), log, what)


if __name__ == "__main__":
    sys.exit(main())
