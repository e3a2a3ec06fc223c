"""The Node process that serves virtual boards, and the JSON-lines channel to it.

One host can serve many boards (a fleet: each board is a worker thread of the same Node process). If the
Python process dies, even by SIGKILL, the kernel kills Node too (PR_SET_PDEATHSIG), and Node also exits when
its stdin closes: pulling the plug on the harness pulls it on every board, and no VM is left running.
"""

from __future__ import annotations

import base64
import ctypes
import json
import logging
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pinseal_vboard.vm import REPO, node_executable

log = logging.getLogger(__name__)

BOARD_HOST_JS = REPO / "hil_tests" / "vboard" / "board_host.mjs"
_PR_SET_PDEATHSIG = 1

EventHandler = Callable[[dict[str, Any]], None]


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class BoardHost:
    """A running board_host.mjs. Boards register a handler for their events."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [node_executable(), str(BOARD_HOST_JS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
            preexec_fn=_die_with_parent,
        )
        self._handlers: dict[str, EventHandler] = {}
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        self.errors: list[str] = []
        threading.Thread(target=self._read_events, name="vboard-host-events", daemon=True).start()
        threading.Thread(target=self._read_stderr, name="vboard-host-stderr", daemon=True).start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def register(self, board_id: str, handler: EventHandler) -> None:
        self._handlers[board_id] = handler

    def unregister(self, board_id: str) -> None:
        self._handlers.pop(board_id, None)

    def send(self, **command: Any) -> None:
        line = (json.dumps(command) + "\n").encode()
        with self._send_lock:
            if self._proc.stdin is None or self._proc.poll() is not None:
                raise RuntimeError("the board host is not running")
            self._proc.stdin.write(line)
            self._proc.stdin.flush()

    def send_serial(self, board_id: str, data: bytes) -> None:
        self.send(op="serial", id=board_id, b64=base64.b64encode(data).decode())

    def send_uart(self, board_id: str, data: bytes) -> None:
        """Bytes arriving on the board's wired UART (its second serial line)."""
        self.send(op="uart", id=board_id, b64=base64.b64encode(data).decode())

    def _read_events(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                log.warning("board host: unreadable event %r", raw[:200])
                continue
            if event.get("ev") == "error":
                self.errors.append(event.get("text", ""))
                log.error("board host: %s", event.get("text"))
                continue
            handler = self._handlers.get(event.get("id", ""))
            if handler is not None:
                handler(event)
        self._closed.set()
        for handler in list(self._handlers.values()):
            handler({"ev": "state", "state": "off", "cause": None, "host_exited": True})

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:
            text = raw.decode(errors="replace").rstrip()
            self.errors.append(text)
            log.warning("board host stderr: %s", text)

    def rss_bytes(self) -> int:
        """Resident memory of the Node process (all boards it serves)."""
        status = Path(f"/proc/{self._proc.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def kill(self) -> None:
        """Pull the plug on every board of this host at once."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._closed.wait(5)

    def close(self) -> None:
        if self._proc.poll() is None and self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
                self._proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._closed.wait(5)

    def __enter__(self) -> BoardHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
