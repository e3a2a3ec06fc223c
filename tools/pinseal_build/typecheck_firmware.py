"""Type-check the firmware against the MicroPython stubs of each board port (`make typecheck-firmware`).

    python -m pinseal_build.typecheck_firmware [ROOT ...] [--port esp32] [--port rp2]

Each ROOT is a folder of MicroPython sources laid out as on a board (default: the firmware; `make
typecheck-firmware` adds the provisioning agent, which runs in a board's raw REPL and so must type-check
against the same stubs).

For each port the stubs (micropython-<port>-stubs, pinned below) are installed once with
`pip install --target build/stubs/<port>` and pyright (node_modules/.bin/pyright) runs over the firmware with
a generated config that points both `typeshedPath` and `stubPath` at that folder, as micropython-stubs
documents: its reduced typeshed `stdlib/` then replaces pyright's bundled one, so `time.sleep_ms`,
`machine`, `asyncio` and friends resolve to MicroPython's API, not CPython's. Host site-packages are not
searched (firmware cannot import them). Exit status 1 on any type error, 2 when the tools cannot run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinseal_build.locations import BUILD_DIR, CHECKOUT, FIRMWARE_DIR

STUBS_DIR = BUILD_DIR / "stubs"
PYRIGHT = CHECKOUT / "node_modules" / ".bin" / "pyright"
# The MicroPython release of the boards and of the VM; the stdlib stubs are their dependency, pinned too.
PORT_STUBS: dict[str, tuple[str, ...]] = {
    "esp32": ("micropython-esp32-stubs==1.29.0.post1", "micropython-stdlib-stubs==1.29.0.post2"),
    "rp2": ("micropython-rp2-stubs==1.29.0.post1", "micropython-stdlib-stubs==1.29.0.post2"),
}
MARKER = ".pinseal-stubs"
EMPTY_VENV = "no-host-packages"
PYTHON_VERSION = "3.8"  # MicroPython's language level is closer to 3.4-3.8 than to the host's Python


class ToolError(RuntimeError):
    pass


@dataclass
class Diagnostic:
    file: str
    line: int
    column: int
    severity: str
    message: str
    rule: str

    def __str__(self) -> str:
        rule = f" [{self.rule}]" if self.rule else ""
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}{rule}"


def ensure_stubs(port: str, stubs_root: Path = STUBS_DIR) -> Path:
    """The folder with the port's stubs, installed with pip on first use (cached, keyed by the pins)."""
    requirements = PORT_STUBS[port]
    target = stubs_root / port
    marker = target / MARKER
    wanted = "\n".join(requirements) + "\n"
    if marker.is_file() and marker.read_text() == wanted:
        return target
    stubs_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{port}-", dir=stubs_root))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--no-user",
        "--target",
        str(staging),
        *requirements,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise ToolError(f"pip could not install {' '.join(requirements)}:\n{proc.stderr.strip()}")
    (staging / MARKER).write_text(wanted)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def pyright_config(
    firmware_dir: Path, stubs: Path, config_dir: Path, extra_roots: Sequence[Path] = ()
) -> dict[str, Any]:
    """pyright's settings; `include` must be relative to the config's folder, the rest may be absolute."""
    (config_dir / EMPTY_VENV / "lib" / f"python{PYTHON_VERSION}" / "site-packages").mkdir(parents=True)
    roots = [firmware_dir, *extra_roots]
    return {
        "include": [os.path.relpath(root, config_dir) for root in roots],
        "exclude": ["**/__pycache__", "**/.*"],
        "extraPaths": [str(root) for root in roots],  # each root is a board's flash root (on sys.path)
        "typeshedPath": str(stubs),  # MicroPython's stdlib stubs instead of pyright's bundled typeshed
        "stubPath": str(stubs),  # port modules: machine, esp32 / rp2, network, ...
        "pythonVersion": PYTHON_VERSION,
        "pythonPlatform": "Linux",
        "typeCheckingMode": "basic",
        "reportMissingModuleSource": "none",  # stub-only packages have no sources by design
        "reportMissingImports": "error",
        "reportUnnecessaryTypeIgnoreComment": "warning",
        # An empty venv: imports must not resolve to the host Python's packages (firmware cannot import them).
        "venvPath": str(config_dir),
        "venv": EMPTY_VENV,
    }


def run_pyright(
    firmware_dir: Path, port: str, stubs: Path, extra_roots: Sequence[Path] = ()
) -> tuple[list[Diagnostic], int]:
    """Diagnostics for one port and the number of files pyright checked (all roots in one run)."""
    if not PYRIGHT.exists():
        raise ToolError(f"{PYRIGHT} is missing: run `npm ci` (make setup)")
    with tempfile.TemporaryDirectory(prefix=f"pyright-{port}-") as tmp:
        config = Path(tmp) / "pyrightconfig.json"
        config.write_text(json.dumps(pyright_config(firmware_dir, stubs, Path(tmp), extra_roots), indent=2))
        cmd = [str(PYRIGHT), "-p", str(config), "--outputjson"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tmp)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise ToolError(f"pyright failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from e
    diagnostics = []
    for d in report.get("generalDiagnostics", []):
        start = d.get("range", {}).get("start", {})
        file = d.get("file", "")
        if Path(file).is_relative_to(CHECKOUT):
            file = str(Path(file).relative_to(CHECKOUT))
        diagnostics.append(
            Diagnostic(
                file,
                int(start.get("line", 0)) + 1,
                int(start.get("character", 0)) + 1,
                d.get("severity", "error"),
                d.get("message", "").replace("\n", " "),
                d.get("rule", ""),
            )
        )
    return diagnostics, int(report.get("summary", {}).get("filesAnalyzed", 0))


def check(roots: Sequence[Path], ports: list[str], stubs_root: Path = STUBS_DIR) -> int:
    roots = [root for root in roots if any(root.rglob("*.py"))]
    if not roots:
        print("typecheck_firmware: no .py files to check")
        return 0
    failed = False
    for port in ports:
        stubs = ensure_stubs(port, stubs_root)
        diagnostics, files = run_pyright(roots[0], port, stubs, roots[1:])
        errors = [d for d in diagnostics if d.severity == "error"]
        for d in diagnostics:
            print(f"[{port}] {d}")
        print(
            f"typecheck_firmware: {port}: {files} files, {len(errors)} errors ({', '.join(PORT_STUBS[port])})"
        )
        failed = failed or bool(errors)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", type=Path, default=[FIRMWARE_DIR], help="default: the firmware")
    parser.add_argument("--port", action="append", choices=sorted(PORT_STUBS), help="default: every port")
    args = parser.parse_args(argv)
    try:
        return check([root.resolve() for root in args.roots], args.port or sorted(PORT_STUBS))
    except ToolError as e:
        print(f"typecheck_firmware: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
