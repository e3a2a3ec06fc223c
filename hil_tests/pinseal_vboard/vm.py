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
from typing import Any

from pinseal_build.locations import FIRMWARE_DIR

REPO = Path(__file__).resolve().parents[2]
FIRMWARE_TESTS_DIR = REPO / "hil_tests" / "firmware_tests"
VECTORS_DIR = REPO / "protocol" / "vectors"
RUN_VM_JS = REPO / "hil_tests" / "vboard" / "run_vm.mjs"

# Board mode: the RAM of an ESP32 without PSRAM, as the firmware can use it (see docs/virtual-board.md).
BOARD_RAM_BYTES = 100_000
# run_vm.mjs exit status when its watchdog killed the VM.
EXIT_TIMEOUT = 3
# Extra time the host waits beyond the VM's own watchdog before it kills Node itself.
_HOST_GRACE_S = 30.0

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

    @property
    def timed_out(self) -> bool:
        """The watchdog (or, failing it, the host) killed the VM: an endless loop, or a step never ended."""
        return self.returncode == EXIT_TIMEOUT and "TIMEOUT" in self.stderr


@dataclass
class VMOptions:
    """How to start the VM.

    heap_bytes: initial MicroPython heap; it grows by itself, so it is no limit (ignored in board mode).
    ram_bytes: board mode when set: asyncio runs one task step per return to JS; live bytes after each
        step's collection are held to this much RAM (MemoryError in the task about to resume); the heap has
        a hard ceiling (ram_ceiling_bytes, default 4 x ram_bytes). `VMOptions.board()`: BOARD_RAM_BYTES.
    timeout_s: wall-clock limit; a watchdog outside the VM's thread kills it (result.timed_out).
    """

    heap_bytes: int = 4 * 1024 * 1024
    mounts: tuple[tuple[Path, str], ...] = DEFAULT_MOUNTS
    sys_path: tuple[str, ...] = ("/tests",)
    timeout_s: float = 300.0
    extra_args: list[str] = field(default_factory=list)
    ram_bytes: int | None = None
    ram_ceiling_bytes: int | None = None

    @classmethod
    def board(cls, ram_bytes: int = BOARD_RAM_BYTES, **kwargs: Any) -> VMOptions:
        """Board mode with the given RAM (default: ESP32 without PSRAM)."""
        return cls(ram_bytes=ram_bytes, **kwargs)


def node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node not found: the MicroPython VM runs under Node 18+ (apt-get install nodejs)")
    return node


def vm_command(script: Path, options: VMOptions | None = None, args: list[str] | None = None) -> list[str]:
    """run_vm.mjs and its arguments (prefix node_executable() to run it), for callers that stream output."""
    options = options or VMOptions()
    cmd = [str(RUN_VM_JS), "--heap", str(options.heap_bytes)]
    if options.ram_bytes is not None:
        cmd += ["--ram", str(options.ram_bytes)]
        if options.ram_ceiling_bytes is not None:
            cmd += ["--ceiling", str(options.ram_ceiling_bytes)]
    if options.timeout_s > 0:
        cmd += ["--timeout", f"{options.timeout_s:g}"]
    for host_dir, vm_dir in options.mounts:
        cmd += ["--mount", f"{host_dir}:{vm_dir}"]
    for vm_dir in options.sys_path:
        cmd += ["--path", vm_dir]
    cmd += options.extra_args
    return [*cmd, str(script), *(args or [])]


def run_script(script: Path, options: VMOptions | None = None, args: list[str] | None = None) -> VMResult:
    """Run a MicroPython script file in a fresh VM; top-level `await` is allowed."""
    options = options or VMOptions()
    cmd = [node_executable(), *vm_command(script, options, args)]
    host_timeout = options.timeout_s + _HOST_GRACE_S if options.timeout_s > 0 else None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=host_timeout, cwd=REPO)
    except subprocess.TimeoutExpired as e:  # the watchdog itself failed: Node is wedged
        message = f"vm.py: TIMEOUT: Node did not stop within {host_timeout:g} s and was killed\n"
        return VMResult(EXIT_TIMEOUT, _text(e.stdout), _text(e.stderr) + message)
    return VMResult(proc.returncode, proc.stdout, proc.stderr)


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def run_code(code: str, options: VMOptions | None = None) -> VMResult:
    """Run MicroPython source text in a fresh VM."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
        path = Path(f.name)
    try:
        return run_script(path, options)
    finally:
        path.unlink(missing_ok=True)


def run_firmware_test_module(
    module: str, only: str | None = None, options: VMOptions | None = None
) -> VMResult:
    """Run one module of hil_tests/firmware_tests with mptest inside the VM."""
    only_arg = repr(only) if only else "None"
    code = (
        "import sys, mptest\n"
        f"failed = await mptest.run_module({module!r}, {only_arg})\n"
        "if failed:\n"
        "    raise SystemExit(1)\n"
    )
    return run_code(code, options)
