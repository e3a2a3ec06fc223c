"""A console script whose extra is not installed says which one, instead of dying on an ImportError.

`pip install pinseal` installs the protocol codec only; each program's dependencies come with an extra
(`pinseal[gateway]`, `pinseal[ingest]`, `pinseal[provision]`). An installed script therefore checks its extra
before importing its program. The requirements are read back from the installed distribution's metadata, so
pyproject.toml stays the only list of them; run from a source tree without an install there is nothing to
check against and the program just starts.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata

DISTRIBUTION = "pinseal"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def missing_requirements(extra: str, distribution: str = DISTRIBUTION) -> list[str]:
    """The distributions `extra` requires that are not installed (empty when all are, or when `distribution`
    itself is not installed)."""
    try:
        requirements = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return []
    wanted = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    missing = []
    for requirement in requirements:
        spec, _, marker = requirement.partition(";")
        name = _NAME.match(spec.strip())
        if name is None or not wanted.search(marker) or name.group() == distribution:
            continue
        try:
            metadata.version(name.group())
        except metadata.PackageNotFoundError:
            missing.append(name.group())
    return missing


def require_extra(extra: str, program: str) -> None:
    """Exit with status 2 and one line naming the extra (and how to install it) if any of it is missing."""
    missing = missing_requirements(extra)
    if missing:
        print(
            f"{program} needs the '{extra}' extra, which is not installed (missing: {', '.join(missing)}); "
            f"install it with: pip install '{DISTRIBUTION}[{extra}]'",
            file=sys.stderr,
        )
        raise SystemExit(2)


def installed_version(distribution: str = DISTRIBUTION) -> str:
    """The installed distribution's version ('unknown' when run from a source tree without an install)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def print_version_if_asked(program: str, argv: list[str], details: str = "") -> bool:
    """`PROGRAM --version` (the only argument): print `PROGRAM VERSION` and `details`, before the extra is
    checked, so an install without the extra still says what it is. True when it printed."""
    if argv != ["--version"]:
        return False
    print(f"{program} {installed_version()}" + (f" ({details})" if details else ""))
    return True
