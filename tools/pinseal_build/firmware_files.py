"""The firmware's file list: what goes on a board, what package.json lists, what mpy-cross compiles.

Deploy, `make compile-firmware`, package.json, the ROMFS image and the wheel each used to walk the tree with
their own rules; they now all ask here, so they cannot disagree about which files are the firmware. Only the
standard library is imported: setup.py uses this module while building the wheel, before any dependency is
installed.
"""

from __future__ import annotations

from pathlib import Path

# MicroPython runs these two by name at boot: they stay .py on the board's filesystem, never compiled to
# .mpy and never in the ROMFS image; every other file is a module of a package.
ENTRY_POINTS = ("main.py", "boot.py")


def _skipped(rel: Path) -> bool:
    """Hidden files and folders, and CPython's bytecode caches, are never firmware."""
    return any(part.startswith(".") or part == "__pycache__" for part in rel.parts)


def sources(root: Path) -> list[Path]:
    """Every MicroPython source file under `root` (the board's flash root), sorted."""
    return sorted(p for p in root.rglob("*.py") if not _skipped(p.relative_to(root)))


def names(root: Path) -> list[str]:
    """The same files as paths on the board, relative to its flash root (`pinseal/app.py`)."""
    return [p.relative_to(root).as_posix() for p in sources(root)]


def is_entry_point(name: str) -> bool:
    """Whether a board-relative name is one of the boot entry points (kept as .py, outside the ROMFS)."""
    return name in ENTRY_POINTS


def package_sources(root: Path) -> list[Path]:
    """The modules of the firmware's packages, everything but the entry points: what the ROMFS holds."""
    return [p for p in sources(root) if not is_entry_point(p.relative_to(root).as_posix())]
