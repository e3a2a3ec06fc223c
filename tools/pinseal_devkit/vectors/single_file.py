"""Writing a vector set kept in one JSON file (mqtt_frames.json, serial_frames.json) and its small CLI.

One place for the file's format (two-space indent, UTF-8, a final newline, as every vector file) and for
`python -m pinseal_devkit.vectors.<module> OUTDIR`, so the framing vector modules hold only their cases.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def write_json(path: Path, content: dict[str, Any]) -> Path:
    """`content` at `path`, formatted as every vector file is."""
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def write_into(outdir: Path, file_name: str, content: dict[str, Any]) -> Path:
    """OUTDIR/file_name (OUTDIR made if missing)."""
    outdir.mkdir(parents=True, exist_ok=True)
    return write_json(outdir / file_name, content)


def cli(module: str, write: Callable[[Path], Path], argv: Sequence[str], echo: Callable[[str], Any]) -> int:
    """`python -m <module> OUTDIR`: 0 when written, 2 on a usage error."""
    if len(argv) != 1:
        echo(f"usage: python -m {module} OUTDIR")
        return 2
    echo(f"wrote {write(Path(argv[0]))}")
    return 0
