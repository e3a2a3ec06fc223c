"""`Verifier`: a group of messages to verdicts, off the event loop, in a worker process when it can.

The pipeline asks `await verifier.check(group, registry, version)` and gets one `Checked` or
`Rejection` per message, in order. How is hidden here: one verify thread hands whole groups to a
worker process (`verify_worker`: signature checks without this process's GIL), sending the registry
only when its version changed; if there is no worker (`pipeline.verify_process = false`) or it died
or cannot start, the group is checked in the verify thread itself and a fresh worker is started for
the next group. Either way the verdicts are the same (`verify.check_message` runs in both).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from pinseal_gateway import verify_worker
from pinseal_gateway.link import Message
from pinseal_gateway.registry import Registry
from pinseal_gateway.verify import Checked, Limits, Rejection, check_message

log = logging.getLogger(__name__)


class Verifier:
    """Checks groups against a registry; owns the verify thread and the worker process behind it."""

    def __init__(self, limits: Limits, *, use_process: bool) -> None:
        self.limits = limits
        self.use_process = use_process  # False: verify in the verify thread only
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pinseal-verify")
        self._worker: ProcessPoolExecutor | None = None
        self._worker_version = -1  # the registry version the worker holds

    async def start(self, registry: Registry, version: int) -> None:
        """Start the worker process now rather than with the first group (no-op without one)."""
        if self.use_process:
            await self.check([], registry, version)

    async def check(
        self, group: Sequence[Message], registry: Registry, version: int
    ) -> list[Checked | Rejection]:
        """The verdicts for `group`, in order, checked against `registry` (whose version is `version`)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self.check_blocking, group, registry, version)

    def close(self) -> None:
        """Wait for the group in flight, then stop the thread and the worker process."""
        self._thread.shutdown(wait=True)
        self._stop_worker(wait=True)

    def check_blocking(
        self, group: Sequence[Message], registry: Registry, version: int
    ) -> list[Checked | Rejection]:
        """In the verify thread: the group checked by the worker process, or here when there is none
        or it failed (a fresh one is started for the next group)."""
        if not self.use_process:
            return self.check_here(group, registry)
        items = [(m.topic, m.payload) for m in group]
        now = time.time()
        try:
            if self._worker is None:
                self._worker = verify_worker.new_pool()
                self._worker_version = -1
            send = None if self._worker_version == version else registry.to_raw()
            try:
                packed = self._worker.submit(
                    verify_worker.check_group, version, send, items, self.limits, now
                ).result()
            except verify_worker.StaleRegistry:
                packed = self._worker.submit(
                    verify_worker.check_group, version, registry.to_raw(), items, self.limits, now
                ).result()
            self._worker_version = version
        except Exception as exc:  # a dead or unstartable worker: verify here, try a new one next time
            log.warning("verify worker failed (%r); checking %d messages in-process", exc, len(group))
            self._stop_worker()
            return self.check_here(group, registry)
        return [verify_worker.unpack(p, m.payload) for p, m in zip(packed, group, strict=True)]

    def check_here(self, group: Sequence[Message], registry: Registry) -> list[Checked | Rejection]:
        """The group checked in the calling thread (the fallback, and the path without a worker)."""
        now = time.time()
        limits = self.limits
        return [check_message(m.topic, m.payload, registry, limits, now) for m in group]

    def _stop_worker(self, wait: bool = False) -> None:
        worker, self._worker = self._worker, None
        self._worker_version = -1
        if worker is not None:
            worker.shutdown(wait=wait, cancel_futures=True)
