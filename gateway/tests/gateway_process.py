"""A real `pinseal-gateway run` process for tests that need its log, its signals or its exit code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def start(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`pinseal-gateway run --config config_path`, stdout and stderr appended to log_path."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pinseal_gateway.cli", "run", "--config", str(config_path)],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


@contextmanager
def running(config_path: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The process for the block, stopped with SIGTERM afterwards."""
    proc = start(config_path, log_path)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def wait_for(log_path: Path, text: str, timeout: float = 20.0) -> str:
    """The log's text once it holds `text`; an AssertionError with the log's end if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log_path.read_text(errors="replace")
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the log within {timeout} s:\n{log_path.read_text()[-3000:]}")


def line_with(log_path: Path, text: str, timeout: float = 20.0) -> str:
    """The first log line holding `text` (see wait_for)."""
    content = wait_for(log_path, text, timeout)
    return next(line for line in content.splitlines() if text in line)
