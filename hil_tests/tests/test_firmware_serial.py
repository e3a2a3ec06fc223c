"""The serial link end to end: the unmodified firmware on a virtual board sends its bundles as frames over
the board's UART (its own pty, beside the REPL's), the gateway reads them with pyserial, verifies, stores and
acks them back on the same line (docs/protocol.md §10, docs/transports.md).

Readings are counted where they end up, in the gateway's store; line damage is put on the wire between the
board and the gateway, in both directions, by a relay the test owns.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pinseal_devkit.devices import VBOARD_SSID, start_device
from pinseal_devkit.stack import Stack, wait_until
from pinseal_devkit.wired_device import LineDamage
from pinseal_vboard import BoardHost, VirtualBoard

pytestmark = [pytest.mark.vm, pytest.mark.broker]

SERIAL_ONLY = {"link": {"transports": ["serial"]}, "wifi": {"ssid": ""}}


@dataclass
class SerialRig:
    stack: Stack
    board: VirtualBoard
    key_id: str

    def stored_seqs(self) -> list[int]:
        with sqlite3.connect(self.stack.workdir / "gateway" / "gateway.sqlite", timeout=10) as db:
            rows = db.execute(
                "SELECT seq, last_seq FROM bundles WHERE kid = ? ORDER BY seq", (bytes.fromhex(self.key_id),)
            ).fetchall()
        return [s for first, last in rows for s in range(first, last + 1)]

    def wait_readings(self, n: int, timeout_s: float = 90) -> list[int]:
        if not wait_until(lambda: len(set(self.stored_seqs())) >= n, timeout_s, 0.2):
            log = (self.stack.logs / "gateway.log").read_text(errors="replace")[-1500:]
            raise AssertionError(
                f"only {len(set(self.stored_seqs()))} of {n} readings stored; board output:\n"
                f"{self.board.text()[-1500:]}\ngateway log:\n{log}"
            )
        return self.stored_seqs()

    def metric(self, name: str) -> float:
        return self.stack.gateway_metric(name)


class NoisyWire:
    """A relay between the board's UART pty and a pty the gateway reads, damaging a seeded share of the
    bytes in both directions (a flipped bit, a lost byte, a burst of noise): what a long cable does."""

    def __init__(self, board_path: str, seed: int, damage: float) -> None:
        self.damage = LineDamage(damage, seed)  # one model of a damaged line, shared with the wired devices
        self._board = os.open(board_path, os.O_RDWR | os.O_NOCTTY)
        import tty

        tty.setraw(self._board)
        self._master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave  # held open: the gateway's closes must not end the relay
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._pump, args=(self._board, self._master), daemon=True),
            threading.Thread(target=self._pump, args=(self._master, self._board), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump(self, src: int, dst: int) -> None:
        import select

        while not self._stop.is_set():
            ready, _, _ = select.select([src], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(src, 4096)
            except OSError:
                return
            try:
                os.write(dst, self.damage(data))
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        for fd in (self._board, self._master, self._slave):
            os.close(fd)


@contextmanager
def serial_rig(
    tmp_path: Path, wire: Any = None, device: dict[str, Any] | None = None, **config: Any
) -> Iterator[SerialRig]:
    """device: start_device's board options; config: config.json sections (serial only unless given)."""
    stack = Stack(tmp_path / "stack", batch_interval_s=1)
    stack.prepare()
    host = BoardHost()
    board, info = start_device(host, stack, tmp_path / "flash", **(device or {}), **{**SERIAL_ONLY, **config})
    relay = None
    try:
        if wire is not None:
            relay = wire(board.uart_path)
            stack.serial_ports = [relay.path]
        else:
            stack.serial_ports = [board.uart_path]
        stack.start()
        board.reset()
        board.wait_for_output(b"pinseal: device ")
        yield SerialRig(stack, board, info["key_id"])
    finally:
        board.stop()
        host.close()
        stack.stop()
        if relay is not None:
            relay.close()


def test_a_damaged_line_costs_resends_never_a_reading_or_a_forged_frame(tmp_path: Path) -> None:
    """Readings over the UART exactly once, the acks back over the same line (the board verified them),
    through a relay that damages a seeded share of the bytes both ways."""
    with serial_rig(
        tmp_path,
        wire=lambda path: NoisyWire(path, seed=15, damage=0.0005),
        bundling={"readings": 2, "max_wait_s": 5},
    ) as r:
        seqs = r.wait_readings(16, timeout_s=150)
        assert len(seqs) == len(set(seqs)), "a reading was stored twice"
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap in what was stored"
        dropped = r.metric("pinseal_gateway_serial_frames_dropped_total")
        assert dropped > 0, "the noise never reached a frame: the test proves nothing"
        with sqlite3.connect(r.stack.workdir / "gateway" / "gateway.sqlite") as db:
            assert db.execute("SELECT count(*) FROM rejections").fetchone()[0] == 0
        assert b"gateway ack verified" in r.board.output


def test_the_preferred_link_carries_the_outbox_when_it_links_and_serial_when_it_does_not(
    tmp_path: Path,
) -> None:
    """transports ["mqtt", "serial"]: the broker refuses at first, so serial carries the outbox; once the
    broker answers, the next retry moves it back to MQTT. Every reading is stored once, whichever link
    carried it, and the counts of both links add up."""
    net = tmp_path / "net.json"
    net.write_text(json.dumps({"refuse": True}))
    with serial_rig(
        tmp_path,
        device={"net": net},
        link={"transports": ["mqtt", "serial"], "link_timeout_s": 3, "retry_s": 8},
        wifi={"ssid": VBOARD_SSID},
        bundling={"readings": 2, "max_wait_s": 5},
    ) as r:
        r.board.wait_for_output(b"pinseal: link none -> serial", timeout_s=30)
        r.wait_readings(6)
        over_serial = r.metric("pinseal_gateway_serial_bundles_total")
        assert over_serial >= 3
        mark = r.board.mark()
        r.board.control("net", {"refuse": False})
        r.board.wait_for_output(b"pinseal: link serial -> mqtt", timeout_s=30, after=mark)
        at_switch = r.metric("pinseal_gateway_serial_bundles_total")
        n = len(r.stored_seqs())
        seqs = r.wait_readings(n + 8)
        assert len(seqs) == len(set(seqs)) and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        # after the switch the bundles came through the broker, not the line (one may have been on the line
        # as the switch happened)
        assert r.metric("pinseal_gateway_serial_bundles_total") <= at_switch + 1
