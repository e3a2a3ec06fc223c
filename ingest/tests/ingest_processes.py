"""`pinseal-ingest run` as a real process (with --workers N), and a plain HTTP client for it: what the
tests of several workers and several hosts on one database drive."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ingest_fixtures import Batch, Response, request

from pinseal_gateway.broker import free_port


def send(port: int, made: Batch) -> Response:
    """POST a batch as the gateway's uplink does."""
    headers = {"Content-Type": "application/cbor", "Idempotency-Key": made.hash_hex}
    return request(port, "POST", "/v1/batches", made.body, headers)


class IngestProcess:
    """`pinseal-ingest run --db TARGET --workers N` on a free loopback port, until `stop`."""

    def __init__(self, target: str, workers: int, folder: Path, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.pid_file = folder / f"ingest-{self.port}.pids"
        self.log = folder / f"ingest-{self.port}.log"
        command = [sys.executable, "-m", "pinseal_ingest.cli", "run", "--db", target]
        command += [
            "--listen",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--pid-file",
            str(self.pid_file),
            *extra,
        ]
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            command, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.workers = workers

    def wait_ready(self, timeout_s: float = 60.0) -> "IngestProcess":
        deadline = time.monotonic() + timeout_s
        while not (self.pid_file.exists() and len(self.pids()) == self.workers + 1):
            assert self.process.poll() is None, f"ingest exited: {self.output()}"
            assert time.monotonic() < deadline, f"ingest did not start: {self.output()}"
            time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as resp:
            assert resp.status == 200
        return self

    def pids(self) -> list[int]:
        try:
            return [int(line) for line in self.pid_file.read_text().split()]
        except (OSError, ValueError):
            return []

    def worker_pids(self) -> list[int]:
        return self.pids()[1:]

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log_file.close()
        return self.process.returncode

    def __enter__(self) -> "IngestProcess":
        return self.wait_ready()

    def __exit__(self, *_: object) -> None:
        if self.stop() != 0:
            raise AssertionError(f"ingest exited {self.process.returncode}: {self.output()}")
