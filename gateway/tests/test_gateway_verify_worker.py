"""The verify worker process gives exactly the in-process verdicts, follows registry changes, and its
death costs nothing but a fallback to in-process checking."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_gateway.link import Message
from pinseal_gateway.registry import Registry, RegistryEntry
from pinseal_gateway.verifier import Verifier
from pinseal_gateway.verify import Checked, Limits, Rejection
from pinseal_protocol import bundle as pbundle
from pinseal_protocol import dcbor, keys
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.senml import Reading, Record

DEVICE_KEY = Ed25519PrivateKey.from_private_bytes(bytes([3]) * 32)
DEVICE_KID = keys.key_id(DEVICE_KEY.public_key())
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes([4]) * 32)
TOPIC = f"pinseal/v1/{DEVICE_KID.hex()}/up"
REGISTRY = Registry({DEVICE_KID: RegistryEntry(DEVICE_KEY.public_key(), False)})
REVOKED = Registry({DEVICE_KID: RegistryEntry(DEVICE_KEY.public_key(), True)})


def fields(seq: int) -> dict[str, object]:
    readings = [
        Reading(
            int(time.time()) - 5 + i,
            (Record("t", "Cel", DecimalFraction(-2, 2100 + i)), Record("p", "Pa", 1)),
        )
        for i in range(3)
    ]
    return dict(boot=1, seq=seq, prev=bytes(16), status=pbundle.Status(), time_source=1, readings=readings)


def mixed_group() -> list[Message]:
    """Every kind of verdict: fast path, generic path, and rejections of several reasons."""
    fast = pbundle.seal(DEVICE_KEY, **fields(0))  # type: ignore[arg-type]
    generic = pbundle.seal_payload(
        DEVICE_KEY,
        DEVICE_KID,
        dcbor.encode(pbundle.payload_map(**fields(3), extra={42: 1})),  # type: ignore[arg-type]
    )
    forged = fast[:-1] + bytes([fast[-1] ^ 1])
    other = pbundle.seal(OTHER_KEY, **fields(0))  # type: ignore[arg-type]
    other_topic = f"pinseal/v1/{keys.key_id(OTHER_KEY.public_key()).hex()}/up"
    items = [
        (TOPIC, fast),
        (TOPIC, generic),
        (TOPIC, forged),
        (other_topic, other),
        (TOPIC, other),
        ("pinseal/v1/up", fast),
        (TOPIC, fast[:40]),
        (TOPIC, b"\xff" * 3000),
        (TOPIC, b"garbage"),
    ]
    return [Message(topic, payload, time.time(), i, None) for i, (topic, payload) in enumerate(items)]  # type: ignore[arg-type]


@pytest.fixture
def verifier() -> Iterator[Verifier]:
    checker = Verifier(Limits(), use_process=True)
    try:
        yield checker
    finally:
        checker.close()


def summary(result: Checked | Rejection) -> tuple[object, ...]:
    if isinstance(result, Rejection):
        return ("rejected", result.reason, result.kid, result.evidence)
    b = result.bundle
    return (
        "checked",
        type(b).__name__,
        b.kid,
        b.boot,
        b.seq,
        b.n_readings,
        b.last_seq,
        b.prev,
        b.status,
        b.time_source,
        b.bundle_hash,
        b.raw,
        result.time_flag,
        list(result.rows),
    )


def test_worker_verdicts_are_the_in_process_verdicts(verifier: Verifier) -> None:
    group = mixed_group()
    in_process = [summary(c) for c in verifier.check_here(group, REGISTRY)]
    in_worker = [summary(c) for c in verifier.check_blocking(group, REGISTRY, 1)]
    assert verifier._worker is not None, "the worker was used"
    assert in_worker == in_process
    assert [s[0] for s in in_worker[:2]] == ["checked", "checked"]
    assert {s[1] for s in in_worker[2:]} == {
        "bad_signature",
        "wrong_topic",
        "unknown_device",
        "malformed",
        "too_large",
    }


def test_worker_follows_registry_versions(verifier: Verifier) -> None:
    group = mixed_group()[:1]
    assert isinstance(verifier.check_blocking(group, REGISTRY, 1)[0], Checked)
    assert verifier.check_blocking(group, REVOKED, 2)[0].reason == "revoked"  # type: ignore[union-attr]
    assert verifier.check_blocking(group, REVOKED, 2)[0].reason == "revoked"  # type: ignore[union-attr]
    # The verifier believes the worker holds a version it does not: the worker says so, gets it resent.
    verifier._worker_version = 3
    assert isinstance(verifier.check_blocking(group, REGISTRY, 3)[0], Checked)


def test_dead_worker_falls_back_and_is_replaced(verifier: Verifier) -> None:
    group = mixed_group()
    expected = [summary(c) for c in verifier.check_here(group, REGISTRY)]
    assert [summary(c) for c in verifier.check_blocking(group, REGISTRY, 1)] == expected
    worker = verifier._worker
    assert worker is not None
    for process in list(worker._processes.values()):  # type: ignore[union-attr]
        process.kill()
        process.join()
    assert [summary(c) for c in verifier.check_blocking(group, REGISTRY, 1)] == expected
    assert [summary(c) for c in verifier.check_blocking(group, REGISTRY, 1)] == expected
    assert verifier._worker is not None and verifier._worker is not worker


def test_worker_exits_when_the_gateway_is_killed(tmp_path) -> None:
    """A SIGKILLed gateway cannot shut its pool down: the worker notices and exits by itself."""
    script = tmp_path / "gateway.py"
    script.write_text(
        "import sys\n"
        "from pinseal_gateway import verify_worker\n"
        "if __name__ == '__main__':\n"
        "    pool = verify_worker.new_pool()\n"
        "    pool.submit(int).result()\n"
        "    print(*[p.pid for p in pool._processes.values()], flush=True)\n"
        "    sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        (worker,) = (int(pid) for pid in proc.stdout.readline().split())
        os.kill(worker, 0)  # alive
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the worker outlived its gateway")
