"""hil_tests' pytest configuration: what it collects, and the hardening suite's one-screen summary."""

from __future__ import annotations

from pathlib import Path

import pytest

# MicroPython test modules run inside the VM (through tests/test_firmware_in_vm.py), never under CPython.
collect_ignore_glob = ["firmware_tests/*", "vboard/*", "bench/*"]

SUMMARY_PATH = Path("build/test-results/hardening-summary.txt")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print the scenarios' accounting at the end of the run and keep it beside the JUnit XML, so CI's
    log shows produced / stored / lost / duplicated per scenario without opening an artifact."""
    from pinseal_hil.scenario_report import RESULTS, summary_text

    if not RESULTS:
        return
    text = summary_text(RESULTS)
    path = config.rootpath / SUMMARY_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    terminalreporter.write_sep("=", "pinseal hardening summary")
    terminalreporter.write(text)
    terminalreporter.write_line(f"(written to {SUMMARY_PATH})")
