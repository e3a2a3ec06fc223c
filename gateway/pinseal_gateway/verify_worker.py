"""Verification in a separate process: the pipeline's verify stage without the gateway's GIL.

Signature checks release the GIL, but a verify *thread* must take it back after every one, and with
the event loop and the database thread busy in Python it waits far longer than the check took: at a
few thousand bundles per second that convoy, not the CPU, bounds the gateway. One worker process
verifies whole groups on the other core instead; the gateway process only pickles the group's topics
and payloads over and unpickles compact verdicts back.

The worker runs `verify.check_message`, the same code the in-process path runs, against a copy of the
registry (`verifier.Verifier` drives it and falls back to that path). The registry is sent with a
version number only when it changed (or the worker is new); a worker asked to check against a version
it does not hold raises `StaleRegistry` and the caller resends.
Anything going wrong with the process (it died, cannot start) makes the caller check that group in its
own thread and start a fresh worker for the next: verification never depends on the worker being up.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import NamedTuple

from pinseal_gateway.registry import RawRegistry, Registry
from pinseal_gateway.verify import Checked, Limits, Rejection, check_message
from pinseal_protocol.bundle import Bundle, Row, Status


class CheckedRecord(NamedTuple):
    """A `Checked` as it crosses back from the worker: the fields the gateway stores, flat.

    No payload (the gateway has the bytes), no signature (checked in the worker), no objects beyond
    the status tuple: a tuple pickles and unpickles far cheaper than a `Checked` holding a `Bundle`.
    """

    kid: bytes
    boot: int
    seq: int
    n_readings: int
    last_seq: int
    prev: bytes
    status: tuple[int, int, int, int, int]  # a `Status`, as its fields
    time_source: int
    rows: Sequence[Row]
    min_time: int
    max_time: int
    bundle_hash: bytes
    time_flag: str | None


Packed = Rejection | Checked | CheckedRecord
"""A verdict as it comes back: a `Checked` as a `CheckedRecord`, a `Rejection` as is."""

PARENT_CHECK_S = 0.5

_registry: Registry | None = None
_version = -1


class StaleRegistry(Exception):
    """The worker does not hold the registry version the group was to be checked against."""


def check_group(
    version: int, registry: RawRegistry | None, items: Sequence[tuple[str, bytes]], limits: Limits, now: float
) -> list[Packed]:
    """In the worker: `check_message` for each (topic, payload), against registry `version`."""
    global _registry, _version
    if registry is not None:
        _registry = Registry.from_raw(registry)
        _version = version
    elif version != _version or _registry is None:
        raise StaleRegistry(f"worker holds registry {_version}, asked for {version}")
    return [_pack(check_message(topic, payload, _registry, limits, now)) for topic, payload in items]


def _pack(result: Checked | Rejection) -> Packed:
    """A `Checked` as a `CheckedRecord`; a `Rejection` as is."""
    if isinstance(result, Checked):
        b = result.bundle
        status = b.status
        return CheckedRecord(  # positional: a keyword call costs twice as much, once per bundle
            b.kid,
            b.boot,
            b.seq,
            b.n_readings,
            b.last_seq,
            b.prev,
            (status.battery_mv, status.rssi_dbm, status.uptime_s, status.dropped, status.reset_cause),
            b.time_source,
            b.rows,
            b.min_time,
            b.max_time,
            b.bundle_hash,
            result.time_flag,
        )
    return result


def unpack(packed: Packed, payload: bytes) -> Checked | Rejection:
    """In the gateway: the verdict `_pack` sent, with `payload` as the bundle's raw bytes."""
    if not isinstance(packed, CheckedRecord):
        return packed
    rows = packed.rows
    bundle = Bundle(  # positional: a keyword call costs twice as much, once per bundle
        packed.kid,
        packed.boot,
        packed.seq,
        packed.n_readings,
        packed.last_seq,
        packed.prev,
        Status(*packed.status),
        packed.time_source,
        rows,
        packed.min_time,
        packed.max_time,
        packed.bundle_hash,
        bytes(payload),
        b"",  # signed, signature: checked in the worker; nothing after verification reads them
        b"",
    )
    return Checked(bundle, packed.time_flag, rows)


def new_pool() -> ProcessPoolExecutor:
    """One worker process, started fresh (spawn: the gateway has threads, which fork would copy badly)."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_watch_parent,
        initargs=(os.getpid(),),
    )


def _watch_parent(parent: int) -> None:
    """In the worker: exit when the gateway is gone. A SIGKILLed gateway cannot shut its pool down,
    and the worker holds its own end of the task pipe, so it would otherwise wait forever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
