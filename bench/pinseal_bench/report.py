"""What every benchmark does with its figures: describe the machine, write build/bench/<name>.json, and
replace its own section of docs/benchmarks.md (leaving the other benchmarks' sections as they are)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DOC_HEADER = "# Benchmarks\n\nWritten by `make bench`; each section names its command.\n"


def machine(*, node: bool = False) -> dict[str, str]:
    """CPU model, cores, kernel and the runtime that ran the benchmark."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    if node:
        info["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return info


def stamp(result: dict[str, Any], **machine_kwargs: bool) -> dict[str, Any]:
    """Add the machine and the time of measurement to a result."""
    result["machine"] = machine(**machine_kwargs)
    result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return result


def write_doc(doc: Path, text: str, section: str) -> None:
    """Replace (or append) one benchmark's section of docs/benchmarks.md."""
    start, end = f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->"
    current = doc.read_text() if doc.exists() else DOC_HEADER
    if start in current and end in current:
        before, rest = current.split(start, 1)
        current = before + text + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    doc.write_text(current)


def publish(result: dict[str, Any], out: Path, doc: Path, section: str, text: str) -> None:
    """The JSON for tools and the section for people, from one result."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    write_doc(doc, text, section)
    print(json.dumps(result, indent=2))
