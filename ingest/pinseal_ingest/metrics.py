"""Prometheus metrics of the ingest, in a registry of its own (one per service, so tests can run many).

With `run --workers N` every worker counts what it handled and a scrape reaches one worker at random, so
the supervisor sets PROMETHEUS_MULTIPROC_DIR (workers.py) and each worker answers `/metrics` with the sum
over all workers, the ones that died and were replaced included: a counter never goes backwards because
the worker that handled those batches crashed.
"""

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from pinseal_ingest.accept import Accepted

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class IngestMetrics:
    """Counters an operator alerts on: what was stored, what was refused and why."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.batches_stored = Counter(
            "pinseal_ingest_batches_stored", "Batches verified and stored", ["mode"], registry=self.registry
        )
        self.batches_duplicate = Counter(
            "pinseal_ingest_batches_duplicate",
            "Batches received again after being stored",
            registry=self.registry,
        )
        self.leaves_stored = Counter(
            "pinseal_ingest_leaves_stored",
            "Bundle hashes committed by stored batches",
            registry=self.registry,
        )
        self.bundles_stored = Counter(
            "pinseal_ingest_bundles_stored", "Bundle bodies verified and stored", registry=self.registry
        )
        self.batches_rejected = Counter(
            "pinseal_ingest_batches_rejected",
            "Batches rejected, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "pinseal_ingest_batch_seconds",
            "Time to verify and store one accepted batch",
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0),
            registry=self.registry,
        )

    def accepted(self, result: Accepted, seconds: float) -> None:
        if result.status == "duplicate":
            self.batches_duplicate.inc()
            return
        self.batches_stored.labels(result.mode).inc()
        self.leaves_stored.inc(result.count)
        self.bundles_stored.inc(result.bundles)
        self.batch_seconds.observe(seconds)

    def rejected(self, reason: str) -> None:
        self.batches_rejected.labels(reason).inc()

    def exposition(self) -> bytes:
        """The text format for `GET /metrics`: this process's, or every worker's together."""
        shared = os.environ.get(MULTIPROC_ENV)
        if shared:
            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=shared)
            return generate_latest(merged)
        return generate_latest(self.registry)
