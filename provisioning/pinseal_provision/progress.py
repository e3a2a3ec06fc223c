"""What a provisioning command tells the person (or script) in front of it while it works.

Flashing, deploying and enrolling take from seconds to minutes; each step has to say what it did, and long
transfers have to show how far they are. One interface, three renderers, picked by where the output goes:

- **rich**: progress bars and one line per step on stderr, when stderr is a terminal;
- **plain**: one line per step, and a transfer's progress at each quarter, when it is not (a log, CI);
- **json** (`--json`): one JSON object per line on stdout for scripts: `{"event": "step", "step", "status",
  "detail"}`, `{"event": "progress", "step", "bytes", "total"}`, and the command's result as
  `{"event": "result", ...}`, so stdout is JSON lines only.

Reporters are shared by the threads of a batch, so every write holds a lock.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

# update(done, total): how far a transfer is (bytes, or boards for a batch)
Update = Callable[[int, int], None]
# A step's status: "done" (it finished and says what it did), "start" (a long one begins), "info", "failed".
STATUSES = ("start", "done", "info", "failed")


class Reporter:
    """The interface: `step` for what happened, `transfer` for something with a size, `result` for the
    command's answer. This base class is also the renderer for library use without a person: it drops
    steps and progress and prints the result as indented JSON (what the CLI printed before reporters)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stdout
        self.lock = threading.Lock()

    def step(self, step: str, status: str, detail: str = "", **fields: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown step status {status!r}")

    @contextmanager
    def transfer(self, step: str, description: str, unit: str = "bytes") -> Iterator[Update]:
        yield lambda done, total: None

    def result(self, data: Any) -> None:
        """The command's answer on stdout: JSON (dicts, lists) or a line of text."""
        with self.lock:
            if isinstance(data, str):
                print(data, file=self.out, flush=True)
            else:
                print(json.dumps(data, indent=2), file=self.out, flush=True)


class PlainReporter(Reporter):
    """One line per step on `err` (stderr); transfers at 0, 25, 50, 75 and 100 %."""

    def __init__(self, err: TextIO | None = None, out: TextIO | None = None) -> None:
        super().__init__(out)
        self.err = err if err is not None else sys.stderr

    def _line(self, text: str) -> None:
        with self.lock:
            print(text, file=self.err, flush=True)

    def step(self, step: str, status: str, detail: str = "", **fields: Any) -> None:
        super().step(step, status, detail)
        where = f"{fields['port']}: " if fields.get("port") else ""
        self._line(f"{where}{step}: {status}" + (f": {detail}" if detail else ""))

    @contextmanager
    def transfer(self, step: str, description: str, unit: str = "bytes") -> Iterator[Update]:
        shown = [-1]

        def update(done: int, total: int) -> None:
            quarter = (4 * done // total) if total else 0
            if quarter > shown[0]:
                shown[0] = quarter
                self._line(f"{step}: {description}: {done}/{total} {unit} ({25 * quarter} %)")

        yield update


class RichReporter(PlainReporter):
    """Progress bars (transient: a finished bar leaves its step line behind) on a terminal console."""

    def __init__(self, console: Console, out: TextIO | None = None) -> None:
        super().__init__(console.file, out)
        self.console = console

    def _line(self, text: str) -> None:
        with self.lock:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    @contextmanager
    def transfer(self, step: str, description: str, unit: str = "bytes") -> Iterator[Update]:
        size = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
        columns = (TextColumn("{task.description}"), BarColumn(), size, TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(f"{step}: {description}", total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total)


class JsonReporter(Reporter):
    """JSON lines on stdout: every step and progress update, then the result."""

    def _event(self, event: dict[str, Any]) -> None:
        with self.lock:
            print(json.dumps(event), file=self.out, flush=True)

    def step(self, step: str, status: str, detail: str = "", **fields: Any) -> None:
        super().step(step, status, detail)
        self._event({"event": "step", "step": step, "status": status, "detail": detail, **fields})

    @contextmanager
    def transfer(self, step: str, description: str, unit: str = "bytes") -> Iterator[Update]:
        last = [-1]

        def update(done: int, total: int) -> None:
            if done != last[0]:
                last[0] = done
                self._event({"event": "progress", "step": step, unit: done, "total": total})

        yield update

    def result(self, data: Any) -> None:
        self._event({"event": "result", "result": data})


def for_output(json_lines: bool, console: Console | None = None) -> Reporter:
    """The renderer for this process: JSON lines when asked, rich on a terminal, plain lines otherwise."""
    if json_lines:
        return JsonReporter()
    console = console if console is not None else Console(stderr=True)
    if console.is_terminal:
        return RichReporter(console)
    return PlainReporter(console.file)
