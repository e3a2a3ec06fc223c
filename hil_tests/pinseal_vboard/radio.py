"""A virtual board's Bluetooth LE radio, board side: what the `bluetooth` shim in the VM asks of its stack
(hil_tests/vboard/mpy/bluetooth.py, radio.mjs) played on some air, and what happens on that air handed
back to the firmware as the IRQs a board gets. The air is a backend: BlueZoo's emulated BlueZ
(`radio_bluez.BluezRadio`, what `make test` uses) or a bumble controller linked to a real kernel's
Bluetooth stack (`radio_bumble.BumbleRadio`, `make test-ble-kernel`).

Shared here: the attribute table as the stack keeps it (values the firmware wrote, the buffer sizes that
bound a central's writes, as NimBLE refuses a longer write), connection numbering, and the faults a test
puts on the air (a seeded share of notifications lost or delayed past the next; the link dropped from the
board's side). The board's requests arrive in the board host's reader thread; the radio runs its air on an
event loop of its own (a thread), so neither waits for the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from typing import Any

from pinseal_vboard.board import VirtualBoard

log = logging.getLogger(__name__)

DEFAULT_ATTRIBUTE_BYTES = 20  # what an attribute holds until gatts_write or gatts_set_buffer sizes it
DEFAULT_MTU = 23  # LE's ATT MTU until an exchange


class WriteTooLong(ValueError):
    """A central wrote more than the attribute's buffer holds: the stack refuses it to the central."""


class Radio:
    """The board side of a radio; a backend implements the `_air_*` methods."""

    def __init__(self, board: VirtualBoard, lose: float = 0.0, seed: int = 0) -> None:
        self.board = board
        self.lose = lose
        self.errors: list[str] = []
        self.notifications_lost = 0
        self.notifications_reordered = 0
        self.service = ""
        self.chars: list[tuple[str, int, int]] = []  # (UUID, flags, value handle) as the firmware registered
        self._rng = random.Random(seed)
        self._held: tuple[str, bytes] | None = None
        self._values: dict[int, bytes] = {}
        self._sizes: dict[int, int] = {}
        self._handle_of: dict[str, int] = {}
        self._uuid_of: dict[int, str] = {}
        self._conn = 0
        self._central: object = None
        self.offered_mtu = DEFAULT_MTU
        """The ATT MTU the firmware offers (`config(mtu=...)`): an exchange settles on the lower offer."""
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name=f"vboard-radio {board.id}", daemon=True
        )
        self._thread.start()
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        asyncio.run_coroutine_threadsafe(self._work(), self.loop)
        board.on_radio = self._from_board

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the radio's loop (from another thread) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.board.on_radio = None
        with contextlib.suppress(Exception):
            self.run(self._shutdown(), 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    async def _shutdown(self) -> None:
        await self._teardown()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def drop(self) -> None:
        """The link lost from the board's side (out of range, its radio reset): from any thread."""
        self.loop.call_soon_threadsafe(self._queue.put_nowait, {"op": "drop"})

    # -- what the backend implements ----------------------------------------------------------------

    async def _air_register(self) -> None:
        """The firmware registered `service` with `chars`."""

    async def _air_advertise(self, on: bool, adv: bytes, resp: bytes) -> None:
        raise NotImplementedError

    def _air_notify(self, uuid: str, data: bytes) -> None:
        raise NotImplementedError

    async def _air_hang_up(self) -> None:
        """End the current link from the board's side."""
        raise NotImplementedError

    async def _air_teardown(self) -> None:
        """Leave the air: stop advertising, drop any link, release what the backend holds."""

    async def _air_offer_mtu(self, mtu: int) -> None:
        """The firmware offers this ATT MTU for the links to come."""

    # -- from the board (host reader thread, then the radio's loop) --------------------------------------

    def _from_board(self, msg: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self._queue.put_nowait, msg)

    async def _work(self) -> None:
        while True:
            msg = await self._queue.get()
            try:
                await self._request(msg)
            except Exception as exc:  # one request's failure is that request's: logged, kept for the test
                log.exception("vboard radio: %s failed", msg.get("op"))
                self.errors.append(f"{msg.get('op')}: {exc!r}")

    async def _request(self, msg: dict[str, Any]) -> None:
        op = msg["op"]
        if op == "active":
            if not msg["on"]:
                await self._teardown()
        elif op == "register":
            await self._teardown()
            (service,) = msg["services"]  # one service: what the firmware registers
            self.service = service["uuid"]
            self.chars = []
            for char in service["chars"]:
                handle = char["handle"]
                self._handle_of[char["uuid"]] = handle
                self._uuid_of[handle] = char["uuid"]
                self._values[handle] = b""
                self._sizes[handle] = DEFAULT_ATTRIBUTE_BYTES
                self.chars.append((char["uuid"], char["flags"], handle))
            await self._air_register()
        elif op == "value":
            handle, value = msg["handle"], bytes.fromhex(msg["hex"])
            self._values[handle] = value
            self._sizes[handle] = max(self._sizes.get(handle, DEFAULT_ATTRIBUTE_BYTES), len(value))
        elif op == "buffer":
            self._sizes[msg["handle"]] = msg["size"]
        elif op == "advertise":
            await self._air_advertise(
                msg["on"], bytes.fromhex(msg.get("adv", "")), bytes.fromhex(msg.get("resp", ""))
            )
        elif op == "mtu":
            self.offered_mtu = msg["mtu"]
            await self._air_offer_mtu(msg["mtu"])
        elif op == "notify":
            self._notify(self._uuid_of[msg["handle"]], bytes.fromhex(msg["hex"]))
        elif op in ("disconnect", "drop") and self._central is not None:
            # the board hangs up, or walks out of range: its stack reports the disconnect either way
            await self._air_hang_up()
        else:
            await self._air_request(msg)

    async def _air_request(self, msg: dict[str, Any]) -> None:
        """A request the shared part does not handle (a backend's own, e.g. relinking)."""

    def _notify(self, uuid: str, data: bytes) -> None:
        if self.lose and self._rng.random() < self.lose:
            if self._rng.random() < 0.5:
                self.notifications_lost += 1
                return
            if self._held is None:  # delayed: it goes out after the next one
                self._held = (uuid, data)
                self.notifications_reordered += 1
                return
        self._air_notify(uuid, data)
        held, self._held = self._held, None
        if held is not None:
            self._air_notify(*held)

    async def _teardown(self) -> None:
        if self._central is not None:
            self._disconnected(self._central)
        await self._air_teardown()

    # -- from the air (the radio's loop) --------------------------------------------------------------

    def read(self, uuid: str, offset: int = 0) -> bytes:
        """A central reads: the value the firmware wrote, from `offset` (a long read comes in parts)."""
        return self._values.get(self._handle_of.get(uuid, -1), b"")[offset:]

    def write(self, uuid: str, value: bytes) -> None:
        """A central writes: refused when longer than the attribute's buffer, else an IRQ to the board."""
        handle = self._handle_of.get(uuid, -1)
        if len(value) > self._sizes.get(handle, DEFAULT_ATTRIBUTE_BYTES):
            raise WriteTooLong(f"{len(value)} bytes > the attribute's buffer")
        self._values[handle] = value
        self.board.radio_event(ev="write", conn=self._conn, handle=handle, hex=value.hex())

    def _connected(self, central: object, addr_hex: str) -> None:
        self._conn += 1
        self._central = central
        self.board.radio_event(ev="connect", conn=self._conn, addr=addr_hex)

    def _disconnected(self, central: object) -> bool:
        """The link ended; False when it was not the current one (already reported)."""
        if central is not self._central and central != self._central:
            return False
        self._central = None
        self.board.radio_event(ev="disconnect", conn=self._conn, addr="00" * 6)
        return True

    def mtu_exchanged(self, mtu: int) -> None:
        self.board.radio_event(ev="mtu", conn=self._conn, mtu=mtu)
