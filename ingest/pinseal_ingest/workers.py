"""`pinseal-ingest run --workers N`: N processes serving one port, and a parent that keeps them running.

Each worker is a whole ingest (HTTP, verification, its own database connection); the kernel spreads
connections over them (SO_REUSEPORT), so signature verification, the bulk of a batch's cost, runs on
every core. Nothing about what is stored lives in a worker's memory: with PostgreSQL the database decides
between workers (storage/postgres.py), so a worker can die at any point of a batch and lose nothing (its
transaction rolls back; the gateway, whose request failed, sends the same bytes again) and store nothing
twice (the retry is a duplicate, or stored once by whoever gets it).

The parent binds the port first (so port 0 resolves to one port for all), starts the workers, restarts
any that exits on its own (a crash is one batch's problem, not the network's), and on SIGTERM or SIGINT
stops them all, each finishing its in-flight requests. A worker that keeps dying right after its start
(RESTART_LIMIT within RESTART_WINDOW_S) means a broken setup, not a bad batch: the parent then stops
everything and exits non-zero instead of spinning.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.process
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from pinseal_ingest.api import MAX_BODY
from pinseal_ingest.metrics import MULTIPROC_ENV
from pinseal_ingest.storage.postgres import redact

log = logging.getLogger(__name__)

RESTART_LIMIT = 5
RESTART_WINDOW_S = 60.0
STOP_TIMEOUT_S = 30.0
PARENT_CHECK_S = 1.0
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class WorkerConfig:
    db: str
    host: str
    port: int
    max_body: int = MAX_BODY


def _worker_main(config: WorkerConfig, ready: multiprocessing.synchronize.Event) -> None:
    """One worker: the ordinary ingest, on the shared port, until SIGTERM (or its supervisor is gone)."""
    from pinseal_ingest.server import serve

    _stop_with_parent(os.getppid())

    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s worker[{os.getpid()}] %(name)s: %(message)s"
    )
    asyncio.run(
        serve(
            config.db,
            config.host,
            config.port,
            max_body=config.max_body,
            reuse_port=True,
            on_ready=lambda _: ready.set(),
        )
    )


def _stop_with_parent(parent: int) -> None:
    """SIGTERM this worker once its supervisor is gone (killed with SIGKILL, it could not stop us): an
    orphaned worker would go on serving the port unsupervised, and hold it against the next start."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="pinseal-ingest-parent-watch", daemon=True).start()


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket: fixes the port for every worker, and fails early
    and clearly if the address is taken by something else."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


class Supervisor:
    """Starts, watches and stops the workers."""

    def __init__(self, config: WorkerConfig, workers: int, pid_file: Path | None = None) -> None:
        if workers < 1:
            raise ValueError("--workers must be at least 1")
        self.config = config
        self.count = workers
        self.pid_file = pid_file
        self._context = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited loop/locks
        self._workers: list[multiprocessing.process.BaseProcess] = []
        self._restarts: deque[float] = deque()
        self._stopping = False

    def _start_one(self) -> multiprocessing.process.BaseProcess:
        ready = self._context.Event()
        process = self._context.Process(
            target=_worker_main, args=(self.config, ready), name="pinseal-ingest-worker", daemon=False
        )
        process.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.wait(0.1):
            if not process.is_alive() or time.monotonic() > deadline:
                process.kill()
                process.join()
                raise RuntimeError(f"an ingest worker did not start (exit code {process.exitcode})")
        return process

    def _write_pids(self) -> None:
        if self.pid_file is not None:
            pids = [os.getpid(), *(p.pid for p in self._workers if p.pid is not None)]
            tmp = self.pid_file.with_name(self.pid_file.name + ".tmp")
            tmp.write_text("".join(f"{pid}\n" for pid in pids))
            os.replace(tmp, self.pid_file)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; 0 after a clean stop, 1 when workers kept dying."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        held = reserve_port(self.config.host, self.config.port)
        metrics_dir = tempfile.mkdtemp(prefix="pinseal-ingest-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir  # inherited by the workers, read before their first metric
        self.config = WorkerConfig(
            self.config.db, self.config.host, held.getsockname()[1], self.config.max_body
        )
        try:
            self._workers = [self._start_one() for _ in range(self.count)]
            self._write_pids()
            log.info(
                "pinseal-ingest listening on %s:%d with %d workers (pids %s), database %s",
                self.config.host,
                self.config.port,
                self.count,
                ", ".join(str(p.pid) for p in self._workers),
                redact(self.config.db),
            )
            return self._watch()
        finally:
            held.close()
            self._stop_all()
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def _watch(self) -> int:
        while not self._stopping:
            time.sleep(0.2)
            for i, process in enumerate(self._workers):
                if process.is_alive() or self._stopping:
                    continue
                log.error(
                    "ingest worker %s exited (code %s): starting another", process.pid, process.exitcode
                )
                now = time.monotonic()
                self._restarts.append(now)
                while self._restarts and now - self._restarts[0] > RESTART_WINDOW_S:
                    self._restarts.popleft()
                if len(self._restarts) > RESTART_LIMIT:
                    log.critical(
                        "workers died %d times within %.0f s: stopping", RESTART_LIMIT, RESTART_WINDOW_S
                    )
                    return 1
                self._workers[i] = self._start_one()
                self._write_pids()
        log.info("shutting down %d workers", len(self._workers))
        return 0

    def _stop_all(self) -> None:
        for process in self._workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self._workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker %s did not stop in %.0f s: killed", process.pid, STOP_TIMEOUT_S)
                process.kill()
                process.join()
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)
