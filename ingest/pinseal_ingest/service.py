"""The ingest's database behind one worker thread, for the asyncio HTTP layer.

Verifying a large batch (thousands of Ed25519 checks) and an fsync'ing commit would stall the event
loop, and SQLite wants one writer: so every database operation runs, one at a time and in order, on a
single worker thread that owns the connection. `/metrics` and `/healthz` stay responsive meanwhile.
"""

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pinseal_ingest import accept, db, queries, store
from pinseal_ingest.accept import Accepted, Rejection
from pinseal_ingest.metrics import IngestMetrics
from pinseal_ingest.rejections import CLIENT, RejectionPolicy
from pinseal_ingest.storage import Database

T = TypeVar("T")


class IngestService:
    """What the HTTP handlers call; owns the connection, the worker thread and the metrics."""

    def __init__(self, path: str | Path, metrics: IngestMetrics | None = None) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pinseal-ingest-db")
        self._conn: Database = self._executor.submit(db.connect, path).result()
        self.metrics = metrics or IngestMetrics()
        self._rejections = RejectionPolicy(self.metrics.registry)
        self.anchor_part: queries.AnchorPart = self._anchor_of

    @property
    def database(self) -> str:
        """Where the data is, for logs: a path, or the URL without its password."""
        return self._conn.target

    def _anchor_of(self, batch_hash: bytes) -> dict[str, Any] | None:
        """A proof's "anchor": the confirmed anchor holding this batch, rebuilt from the outbox, or None
        (not anchored yet, or anchoring not configured on the network). On the database thread."""
        from pinseal_anchor.proof import anchor_proof

        return anchor_proof(self._conn, batch_hash)  # type: ignore[arg-type]

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def submit(self, body: bytes, idempotency_key: str | None) -> Accepted:
        """Verify and store one uplink body; raises `Rejection` (already recorded and counted)."""
        started = time.perf_counter()
        try:
            result = await self._run(self._accept, body, idempotency_key, CLIENT.get())
        except Rejection as rejection:
            self.metrics.rejected(rejection.reason)
            raise
        self.metrics.accepted(result, time.perf_counter() - started)
        return result

    def _accept(self, body: bytes, idempotency_key: str | None, client: str | None = None) -> Accepted:
        now = time.time()
        try:
            return accept.accept(self._conn, body, idempotency_key=idempotency_key, now=now)
        except Rejection as rejection:
            self._record(rejection, now, client)
            raise

    async def reject(self, rejection: Rejection) -> None:
        """Record and count a rejection decided before the body reached `submit` (size, media type)."""
        self.metrics.rejected(rejection.reason)
        await self._run(self._record, rejection, time.time(), CLIENT.get())

    def _record(self, rejection: Rejection, now: float, client: str | None = None) -> None:
        """Stored, or tallied when its source is over budget (`rejections`): counted either way."""
        self._rejections.record(self._conn, rejection, now, client)

    async def batch_info(self, batch_hash: bytes) -> dict[str, Any] | None:
        return await self._run(store.batch_info, self._conn, batch_hash)

    async def bundle_info(self, bundle_hash: bytes) -> dict[str, Any] | None:
        return await self._run(store.bundle_info, self._conn, bundle_hash)

    async def device_readings(self, kid: bytes, after_seq: int | None, limit: int) -> dict[str, Any] | None:
        return await self._run(queries.device_readings, self._conn, kid, after_seq=after_seq, limit=limit)

    async def bundle_proof(self, bundle_hash: bytes) -> dict[str, Any] | None:
        return await self._run(queries.bundle_proof, self._conn, bundle_hash, anchor_part=self.anchor_part)

    async def healthy(self) -> bool:
        """The database answers a query."""
        return await self._run(lambda: self._conn.execute("SELECT 1").fetchone() == (1,))

    def close(self) -> None:
        """Finish queued work (and write the waiting rejection tallies), then close the connection on its
        own thread."""
        self._executor.submit(self._rejections.flush, self._conn).result()
        self._executor.submit(self._conn.close).result()
        self._executor.shutdown(wait=True)
