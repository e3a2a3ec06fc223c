"""One timed backlog drain: a fresh database, the real `pinseal-ingest run`, the load generator, /proc CPU.

Before timing: the database is made (a fresh PostgreSQL server, or a SQLite file), the backlog's gateways
and devices registered, the ingest started and answering /healthz (with --workers, every worker up, read
from its --pid-file), the load generator loaded and waiting. Timing runs from `go` (the first POST) until
the database holds every batch (polled on a table of a few hundred rows, so the poll costs the server
next to nothing; a batch commits with its bundles, and the readings are counted once at the end).
CPU is sampled at both ends over the process trees of the ingest and of the PostgreSQL server, and of
the load generator apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from pinseal_bench import network_cpu, network_load
from pinseal_devkit.postgres import PostgresServer
from pinseal_gateway.broker import free_port
from pinseal_ingest import db as ingest_db
from pinseal_ingest.storage import is_url

PG_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
"""What a deployment runs with: every commit durable before the gateway hears 200."""
START_TIMEOUT_S = 60


def _wait_healthy(port: int, ingest: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ingest.poll() is not None:
            raise RuntimeError(f"the ingest exited ({ingest.returncode}): {log.read_text()[-2000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError("the ingest did not answer /healthz")


def _wait_workers(pid_file: Path, workers: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if len(pid_file.read_text().split()) == workers + 1:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{pid_file} never listed {workers} workers")


class _Counter:
    """Stored batches and readings, read on a connection of its own (kept open: its backend's CPU is
    then a live process's, and small)."""

    def __init__(self, target: str) -> None:
        if is_url(target):
            import psycopg

            self.conn: Any = psycopg.connect(target, autocommit=True)
        else:
            self.conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True, timeout=30)

    def scalar(self, sql: str) -> int:
        return int(self.conn.execute(sql).fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def drain(
    engine: str,
    workers: int,
    cache: Path,
    chains: list[dict[str, Any]],
    *,
    expected_readings: int,
    in_flight: int,
    timeout_s: float,
) -> dict[str, Any]:
    """One run; engine "sqlite" or "postgresql"."""
    workdir = Path(tempfile.mkdtemp(prefix="pinseal-network-"))
    server = PostgresServer(settings=PG_SETTINGS).start() if engine == "postgresql" else None
    ingest = loadgen = None
    counter: _Counter | None = None
    try:
        target = server.create_database("ingest") if server else str(workdir / "ingest.sqlite")
        conn = ingest_db.connect(target)
        network_load.register(conn, chains)
        conn.close()
        expected_batches = sum(len(c["bodies"]) for c in chains)
        port = free_port()
        log = workdir / "ingest.log"
        pid_file = workdir / "ingest.pids"
        command = [sys.executable, "-m", "pinseal_ingest.cli", "run", "--db", target]
        command += ["--listen", f"127.0.0.1:{port}"]
        if workers > 1:
            command += ["--workers", str(workers), "--pid-file", str(pid_file)]
        with log.open("wb") as out:
            ingest = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_healthy(port, ingest, log)
        if workers > 1:
            _wait_workers(pid_file, workers)
        loadgen = subprocess.Popen(
            [sys.executable, "-m", "pinseal_bench.network_load", "--cache", str(cache),
             "--url", f"http://127.0.0.1:{port}/v1/batches", "--in-flight", str(in_flight),
             "--timeout", str(timeout_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        assert loadgen.stdin is not None and loadgen.stdout is not None
        if loadgen.stdout.readline().strip() != b"ready":
            raise RuntimeError("the load generator did not start")
        counter = _Counter(target)
        postmaster = server.postmaster_pid() if server else None

        def sample() -> tuple[float, float, float]:
            return (
                network_cpu.tree_ms(ingest.pid),  # type: ignore[union-attr]
                network_cpu.tree_ms(postmaster) if postmaster else 0.0,
                network_cpu.process_ms(loadgen.pid),  # type: ignore[union-attr]
            )

        ingest_pids = len(network_cpu.tree(ingest.pid))
        cpu0 = sample()
        started = time.perf_counter()
        loadgen.stdin.write(b"go\n")
        loadgen.stdin.flush()
        deadline = time.monotonic() + timeout_s
        while counter.scalar("SELECT COUNT(*) FROM batches") < expected_batches:
            if time.monotonic() > deadline or loadgen.poll() not in (None, 0):
                raise RuntimeError(f"drain incomplete (load generator exit {loadgen.poll()})")
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        cpu1 = sample()
        posted = json.loads(loadgen.communicate(timeout=60)[0].decode().strip().splitlines()[-1])
        readings = counter.scalar("SELECT COALESCE(SUM(n_readings), 0) FROM bundles")
        bundles = counter.scalar("SELECT COUNT(*) FROM bundles")
        distinct = counter.scalar("SELECT COUNT(*) FROM (SELECT DISTINCT hash FROM bundles) AS d")
        if server:
            db_bytes = counter.scalar("SELECT pg_database_size(current_database())")
        else:
            db_bytes = sum(p.stat().st_size for p in (Path(target), Path(target + "-wal")) if p.exists())
    finally:
        if counter is not None:
            counter.close()
        for proc in (loadgen, ingest):
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if server is not None:
            server.stop()
        with contextlib.suppress(OSError):
            for p in sorted(workdir.iterdir()):
                p.unlink()
            workdir.rmdir()
    ingest_ms, pg_ms, loadgen_ms = (b - a for a, b in zip(cpu0, cpu1, strict=True))
    return {
        "engine": engine,
        "workers": workers,
        "ingest_processes": ingest_pids,
        "seconds": round(seconds, 2),
        "readings": readings,
        "bundles": bundles,
        "lost_readings": expected_readings - readings,
        "duplicated_bundles": bundles - distinct,
        "readings_per_s": round(readings / seconds, 1),
        "cpu_ms": {"ingest": round(ingest_ms), "postgresql": round(pg_ms), "loadgen": round(loadgen_ms)},
        "cpu_ms_per_reading": round((ingest_ms + pg_ms) / readings, 5),
        "loadgen_cpu_ms_per_reading": round(loadgen_ms / readings, 5),
        "db_bytes": db_bytes,
        "db_bytes_per_reading": round(db_bytes / readings, 1),
        "posted": posted,
    }
