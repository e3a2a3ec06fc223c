"""Run MicroPython code inside the real MicroPython VM (the WebAssembly port, under Node).

Firmware tests must run in the interpreter that boards run, never only under CPython: this module is
the one way host code starts that interpreter, so paths, mounts and limits are decided in one place.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = REPO / "firmware"
FIRMWARE_TESTS_DIR = REPO / "hil_tests" / "firmware_tests"
VECTORS_DIR = REPO / "protocol" / "vectors"
RUN_VM_JS = REPO / "hil_tests" / "vboard" / "run_vm.mjs"

# Where things appear inside the VM: the firmware at the root as on a board's flash.
DEFAULT_MOUNTS: tuple[tuple[Path, str], ...] = (
    (FIRMWARE_DIR, "/"),
    (FIRMWARE_TESTS_DIR, "/tests"),
    (VECTORS_DIR, "/vectors"),
)


@dataclass
class VMResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class VMOptions:
    heap_bytes: int = 4 * 1024 * 1024
    mounts: tuple[tuple[Path, str], ...] = DEFAULT_MOUNTS
    sys_path: tuple[str, ...] = ("/tests",)
    timeout_s: float = 300.0
    extra_args: list[str] = field(default_factory=list)


def node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node not found: the MicroPython VM runs under Node 18+ (apt-get install nodejs)")
    return node


def run_script(script: Path, options: VMOptions | None = None, args: list[str] | None = None) -> VMResult:
    """Run a MicroPython script file in a fresh VM; top-level `await` is allowed."""
    options = options or VMOptions()
    cmd = [node_executable(), str(RUN_VM_JS), "--heap", str(options.heap_bytes)]
    for host_dir, vm_dir in options.mounts:
        cmd += ["--mount", f"{host_dir}:{vm_dir}"]
    for vm_dir in options.sys_path:
        cmd += ["--path", vm_dir]
    cmd += options.extra_args
    cmd += [str(script), *(args or [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=options.timeout_s, cwd=REPO)
    return VMResult(proc.returncode, proc.stdout, proc.stderr)


def run_code(code: str, options: VMOptions | None = None) -> VMResult:
    """Run MicroPython source text in a fresh VM."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
        path = Path(f.name)
    try:
        return run_script(path, options)
    finally:
        path.unlink(missing_ok=True)


def run_firmware_test_module(module: str, only: str | None = None, options: VMOptions | None = None) -> VMResult:
    """Run one module of hil_tests/firmware_tests with mptest inside the VM."""
    only_arg = repr(only) if only else "None"
    code = (
        "import sys, mptest\n"
        f"failed = await mptest.run_module({module!r}, {only_arg})\n"
        "if failed:\n"
        "    raise SystemExit(1)\n"
    )
    return run_code(code, options)
