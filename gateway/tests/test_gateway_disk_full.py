"""Issue 11 #3: a real full disk pauses the gateway's writers and they resume when space returns.

No simulated write failure: the gateway's data directory is a small tmpfs mounted in a private mount
namespace (`unshare -m`), the real `pinseal-gateway run` process works in it, and a filler file (written
and removed through the gateway's /proc/PID/root) makes SQLite itself answer "database or disk is full".
Real Mosquitto, real network ingest over HTTP on loopback.
"""

from __future__ import annotations

import errno
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from pinseal_gateway import broker
from pinseal_gateway.daemon import SHUTDOWN_GRACE_S
from pinseal_protocol import bundle as pbundle

pytestmark = pytest.mark.broker

TMPFS_SIZE = "2m"
BIN = Path(sys.executable).parent


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def tmpfs_unavailable(probe: Path) -> str | None:
    """Why a tmpfs cannot be mounted in a private mount namespace here (None when it can)."""
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe.mkdir()
    result = subprocess.run(
        ["unshare", "-m", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if result.returncode != 0:
        return f"cannot mount a tmpfs inside unshare -m: {result.stderr.strip()}"
    return None


def as_the_gateway_sees(pid: int, path: Path) -> Path:
    """`path` in the gateway's mount namespace (where its tmpfs is), through /proc/PID/root.

    Not `nsenter -m`: joining a mount namespace needs a single-threaded caller and a process run by
    qemu-user never is (make hil-arm64 runs this test there; setns fails with EINVAL)."""
    return Path(f"/proc/{pid}/root") / path.relative_to("/")


def fill(pid: int, data: Path) -> None:
    """Fill the gateway's tmpfs to the last byte with a filler file."""
    chunk = bytes(4096)
    with as_the_gateway_sees(pid, data / "filler").open("wb", buffering=0) as filler:
        try:
            while True:
                filler.write(chunk)
        except OSError as err:
            assert err.errno == errno.ENOSPC, err


def unfill(pid: int, data: Path) -> None:
    as_the_gateway_sees(pid, data / "filler").unlink()


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def status(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
        return json.loads(response.read())


def metric(port: int, name: str) -> float:
    try:
        return metrics(port).get(f"pinseal_gateway_{name}", 0.0)
    except OSError:
        return 0.0


def ingest_count(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        (n,) = conn.execute("SELECT count(DISTINCT hash) FROM bundles").fetchone()
        return n
    finally:
        conn.close()


def start_on_tmpfs(env: object, config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`pinseal-gateway run` with its data directory (registry, key, MQTT password) moved onto a small
    tmpfs mounted in a mount namespace of its own: only the gateway (and /proc/PID/root) sees it."""
    data = env.config.data_dir  # type: ignore[attr-defined]
    seed = data.parent / "seed"
    data.rename(seed)
    data.mkdir()
    script = (
        f"mount -t tmpfs -o size={TMPFS_SIZE},mode=0700 tmpfs {data} && cp -a {seed}/. {data}/ && "
        f"exec {sys.executable} -m pinseal_gateway.cli run --config {config}"
    )
    with log_path.open("wb") as log_file:
        return subprocess.Popen(["unshare", "-m", "sh", "-c", script], stdout=log_file, stderr=log_file)


def test_disk_full_pauses_writers_keeps_running_and_resumes(env, tmp_path) -> None:
    reason = tmpfs_unavailable(tmp_path / "probe")
    if reason is not None:
        pytest.skip(reason)
    http_port, ingest_port = broker.free_port(), broker.free_port()
    raw = env.extra["raw"]
    raw["http"] = {"listen": f"127.0.0.1:{http_port}"}
    raw["batch"] = {"interval_s": 3, "max_bundles": 10}
    raw["uplink"] = {
        "kind": "http",
        "url": f"http://127.0.0.1:{ingest_port}/v1/batches",
        "backoff_initial_s": 0.2,
        "backoff_max_s": 1.0,
    }
    config = env.write_toml(tmp_path / "gateway.toml")

    # The network ingest knows this gateway and its devices; it starts only once the disk is full.
    ingest_db = tmp_path / "ingest.sqlite"
    exported = subprocess.run(
        [BIN / "pinseal-gateway", "devices", "export", "--config", config],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    (tmp_path / "devices.json").write_bytes(exported)
    ingest_cli = [BIN / "pinseal-ingest"]
    subprocess.run(
        [*ingest_cli, "gateways", "add", env.gateway_public.hex(), "--db", ingest_db], check=True, timeout=30
    )
    subprocess.run(
        [*ingest_cli, "devices", "import", tmp_path / "devices.json", "--db", ingest_db],
        check=True,
        timeout=30,
    )

    data = env.config.data_dir
    log_path = tmp_path / "gateway.log"
    gateway = start_on_tmpfs(env, config, log_path)
    ingest: subprocess.Popen[bytes] | None = None
    device = env.devices[0]
    peer = None
    try:
        wait_until(lambda: metric(http_port, "mqtt_subscribed") == 1, 30, "the gateway to subscribe")
        peer = env.device_peer(device)

        # 1. Ten bundles stored, acked and sealed into batch 0 (max_bundles); the uplink cannot reach the
        #    network yet, so it records failed attempts. Five more are stored and acked, not yet batched.
        first = [device.seal() for _ in range(10)]
        for raw_bundle in first:
            peer.send(raw_bundle)
        peer.acks_for({pbundle.bundle_hash(r) for r in first})
        wait_until(lambda: metric(http_port, "batches_sealed_total") >= 1, 10, "batch 0")
        more = [device.seal() for _ in range(5)]
        for raw_bundle in more:
            peer.send(raw_bundle)
        peer.acks_for({pbundle.bundle_hash(r) for r in more})

        # 2. The disk fills up. The batcher's next seal (interval 3 s) and the uplink's bookkeeping fail,
        #    and so does every new group the store tries to commit.
        fill(gateway.pid, data)
        assert status(http_port)["counts"]["unbatched"] == 5  # type: ignore[index]
        ingest = subprocess.Popen(
            [*ingest_cli, "run", "--db", ingest_db, "--listen", f"127.0.0.1:{ingest_port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        during = [device.seal() for _ in range(20)]
        for raw_bundle in during:
            peer.send(raw_bundle)
        for part in ("store", "batcher", "uplink"):
            wait_until(
                lambda part=part: metric(http_port, f'storage_full{{part="{part}"}}') == 1,
                15,
                f"the {part} to report the full disk",
            )
        time.sleep(1.0)
        assert gateway.poll() is None, "the gateway exited on a full disk"
        assert peer.messages.empty(), "an ack for a bundle that was not committed"
        assert metric(http_port, "bundles_accepted_total") == 15
        log_during = log_path.read_text()
        for part in ("store", "batcher", "uplink"):
            assert log_during.count(f"storage full: {part} paused") == 1, part  # once, not per try
        assert log_during.count("Traceback") <= 3, "a traceback per retry"

        # 3. Space returns: everything resumes by itself, nothing lost, nothing twice.
        unfill(gateway.pid, data)
        peer.acks_for({pbundle.bundle_hash(r) for r in during}, timeout=30)
        for part in ("store", "batcher", "uplink"):
            wait_until(
                lambda part=part: metric(http_port, f'storage_full{{part="{part}"}}') == 0,
                15,
                f"the {part} to resume",
            )
        wait_until(lambda: ingest_count(ingest_db) == 35, 30, "all 35 bundles at the network ingest")
        counts = status(http_port)["counts"]
        assert counts["bundles"] == 35 and counts["unbatched"] == 0  # type: ignore[index]
        assert metric(http_port, "bundles_accepted_total") == 35
        assert gateway.poll() is None
    finally:
        if peer is not None:
            peer.close()
        if gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
        try:
            code = gateway.wait(timeout=20)
        except subprocess.TimeoutExpired:
            gateway.kill()
            code = gateway.wait()
        if ingest is not None:
            ingest.terminate()
            ingest.wait(timeout=20)
    log_text = log_path.read_text()
    assert code == 0, f"exit status {code}:\n{log_text[-3000:]}"
    assert log_text.count("\n") < 400, "log flood"


def test_sigterm_while_paused_on_a_full_disk_exits_0_within_the_grace_period(env, tmp_path) -> None:
    """A stop asked for while the store waits for space: no hang, no SIGKILL, nothing acked uncommitted."""
    reason = tmpfs_unavailable(tmp_path / "probe")
    if reason is not None:
        pytest.skip(reason)
    http_port = broker.free_port()
    env.extra["raw"]["http"] = {"listen": f"127.0.0.1:{http_port}"}
    config = env.write_toml(tmp_path / "gateway.toml")
    data = env.config.data_dir
    log_path = tmp_path / "gateway.log"
    gateway = start_on_tmpfs(env, config, log_path)
    device = env.devices[0]
    peer = None
    try:
        wait_until(lambda: metric(http_port, "mqtt_subscribed") == 1, 30, "the gateway to subscribe")
        peer = env.device_peer(device)
        stored = [device.seal() for _ in range(3)]
        for raw_bundle in stored:
            peer.send(raw_bundle)
        peer.acks_for({pbundle.bundle_hash(r) for r in stored})
        fill(gateway.pid, data)
        for raw_bundle in [device.seal() for _ in range(5)]:
            peer.send(raw_bundle)
        wait_until(lambda: metric(http_port, 'storage_full{part="store"}') == 1, 15, "the store to pause")
        started = time.monotonic()
        gateway.send_signal(signal.SIGTERM)
        code = gateway.wait(timeout=SHUTDOWN_GRACE_S + 5)
        took = time.monotonic() - started
        assert peer.messages.empty(), "an ack for a bundle that was not committed"
    finally:
        if peer is not None:
            peer.close()
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()
    assert code == 0, log_path.read_text()[-3000:]
    assert took < SHUTDOWN_GRACE_S, f"stopping took {took:.1f} s"
