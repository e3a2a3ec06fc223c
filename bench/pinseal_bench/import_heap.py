"""Where the firmware's heap goes: each module's import cost on a board, measured in the MicroPython VM.

`python -m pinseal_bench.import_heap [--py] [--top N]` compiles the firmware as `pinseal-provision deploy
--no-romfs` puts it on a stock image (.mpy files; `--py`: sources), imports the application's modules one at
a time, dependencies first (the order comes from the sources' own import statements), and prints what each
keeps live (code, dict, constants, tables built at import) and the garbage its import made. This is the
breakdown the heap work of issue 13 was cut by; bench/firmware/import_heap.py is the VM side.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from pinseal_build import firmware_files, mpy
from pinseal_vboard.board import install_firmware
from pinseal_vboard.profiles import load_profile
from pinseal_vboard.vm import BOARD_RAM_BYTES, FIRMWARE_DIR, REPO, VMOptions, run_script

BENCH_DIR = REPO / "bench" / "firmware"
SCRIPT = BENCH_DIR / "import_heap.py"
# What a running application has imported (entry.main and pinseal.startup import the rest lazily).
APP_MODULES = (
    "pinseal.entry",
    "pinseal.app",
    "pinseal.counter",
    "pinseal.outbox",
    "pinseal.sampler",
    "pinseal.transport.mqtt",
    "pinseal.crypto.backend",  # the Ed25519 selector: on stock MicroPython it loads the pure signer below
    "pinseal.crypto.ed25519",
    "pinseal.crypto.comb_table",  # the first signature loads it (one sub-comb on esp32_devkitc)
)
# The board whose mpy-cross options (ram.mpy_opt) the .mpy files are compiled with.
BOARD = "esp32_devkitc"


def module_name(rel: str) -> str:
    """`pinseal/wire/__init__.py` -> `pinseal.wire`."""
    name = rel[:-3].replace("/", ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def firmware_imports(root: Path) -> dict[str, set[str]]:
    """Each firmware module and the firmware modules it imports at its top level (not inside functions:
    those are imported when used)."""
    modules = {module_name(p.relative_to(root).as_posix()): p for p in firmware_files.package_sources(root)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                deps.add(node.module)
                deps.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def import_order(graph: dict[str, set[str]], wanted: tuple[str, ...]) -> list[str]:
    """`wanted` and everything they import, each after what it imports (parent packages first, as
    MicroPython imports them)."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        parts = name.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[:i]) in graph:
                visit(".".join(parts[:i]))
        for dep in sorted(graph.get(name, ())):
            visit(dep)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


def measure(as_mpy: bool = True, modules: tuple[str, ...] = APP_MODULES) -> dict[str, Any]:
    """Per-module live bytes and import garbage, in import order, on a board of BOARD_RAM_BYTES."""
    order = import_order(firmware_imports(FIRMWARE_DIR), modules)
    with tempfile.TemporaryDirectory(prefix="pinseal-import-heap-") as tmp:
        install_firmware(FIRMWARE_DIR, Path(tmp), as_mpy=as_mpy, mpy_opt=mpy.opt_level(load_profile(BOARD)))
        # a board's RAM, with room above it: this measures, it does not hold the firmware to a limit
        options = VMOptions.board(
            BOARD_RAM_BYTES * 4, timeout_s=300, mounts=((Path(tmp), "/"), (BENCH_DIR, "/bench"))
        )
        options.sys_path = ("/bench",)
        result = run_script(SCRIPT, options, order)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"import_heap failed (exit {result.returncode}):\n{result.output}")
    report = json.loads(lines[-1])
    report["files"] = "mpy" if as_mpy else "py"
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--py", action="store_true", help="source files instead of .mpy")
    parser.add_argument("--top", type=int, default=0, help="print the N largest as a table instead of JSON")
    args = parser.parse_args(argv)
    report = measure(as_mpy=not args.py)
    if not args.top:
        print(json.dumps(report, indent=2))
        return 0
    rows = sorted(report["modules"], key=lambda r: -r[1])
    print(f"{'module':32} {'live B':>8} {'import garbage B':>17}")
    for name, live, made in rows[: args.top]:
        print(f"{name:32} {live:8d} {made:17d}")
    print(f"{'total (' + str(len(rows)) + ' modules)':32} {report['total']:8d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
