"""Several ingest workers, and several ingest hosts, on one database: each batch and bundle is stored
exactly once because the database decides (issue 17 #2), and a worker killed mid-batch loses nothing.

Races are made, not hoped for: every contender waits at a barrier and then sends at once, over rounds.
"""

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from ingest_fixtures import Batch, Gateway, Response, key, register, sim_device, table_counts
from ingest_processes import IngestProcess, send

from pinseal_protocol import batch

ROUNDS = 6


def at_once(calls: list[Callable[[], Response]]) -> list[Response]:
    """Run the calls in threads released together; their responses in call order."""
    barrier = threading.Barrier(len(calls))
    results: list[Response | BaseException] = [RuntimeError("not run")] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # surfaced below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


@pytest.fixture
def workers(postgres_url: str, tmp_path: Path) -> Iterator[tuple[str, IngestProcess]]:
    with IngestProcess(postgres_url, 3, tmp_path) as ingest:
        yield postgres_url, ingest


def test_one_batch_raced_to_every_worker_is_stored_once(workers: tuple[str, IngestProcess]) -> None:
    url, ingest = workers
    gateway, device = Gateway(key(1)), sim_device(2)
    register(url, gateways=[gateway], devices=[device])
    for round_ in range(ROUNDS):
        made = gateway.make([device.seal() for _ in range(20)])
        statuses = Counter(r.body["status"] for r in at_once([lambda m=made: send(ingest.port, m)] * 8))
        assert statuses == {"stored": 1, "duplicate": 7}, (round_, statuses)
    assert table_counts(url) == {"batches": ROUNDS, "leaves": 20 * ROUNDS, "bundles": 20 * ROUNDS}


def test_a_bundle_raced_in_two_gateways_batches_is_committed_once(workers: tuple[str, IngestProcess]) -> None:
    url, ingest = workers
    first, second, device = Gateway(key(1)), Gateway(key(4)), sim_device(2)
    register(url, gateways=[first, second], devices=[device])
    for round_ in range(ROUNDS):
        bundles = [device.seal() for _ in range(10)]
        made = [gateway.make(bundles, advance=False) for gateway in (first, second)]
        responses = at_once([lambda m=m: send(ingest.port, m) for m in made])
        winners = [i for i, r in enumerate(responses) if r.status == 200]
        assert len(winners) == 1, (round_, responses)
        loser = responses[1 - winners[0]]
        assert loser.status == 422 and all(entry["held"] for entry in loser.body["refused"]), loser
        (first, second)[winners[0]].batch_no += 1  # only the winner's chain moved on
        winner = (first, second)[winners[0]]
        winner.prev_hash = batch.batch_hash(made[winners[0]].header)
    counts = table_counts(url)
    assert counts["leaves"] == counts["bundles"] == 10 * ROUNDS and counts["batches"] == ROUNDS


def test_forked_histories_of_one_device_raced_store_one_side(workers: tuple[str, IngestProcess]) -> None:
    """The same device, the same sequence numbers, other readings (a cloned key): one side is stored, the
    other refused as a conflict, however the two batches interleave across workers."""
    url, ingest = workers
    first, second, device = Gateway(key(1)), Gateway(key(4)), sim_device(2)
    register(url, gateways=[first, second], devices=[device])
    for round_ in range(ROUNDS):
        seq, prev = device.seq, device.prev
        mine = device.seal(4, seq=seq, prev=prev, value=0, advance=False)
        forged = device.seal(4, seq=seq, prev=prev, value=round_ + 1)
        made = [first.make([mine], advance=False), second.make([forged], advance=False)]
        responses = at_once([lambda m=m: send(ingest.port, m) for m in made])
        assert sorted(r.status for r in responses) == [200, 409] or sorted(r.status for r in responses) == [
            200,
            422,
        ], (round_, responses)
        for gateway, made_batch, response in zip((first, second), made, responses, strict=True):
            if response.status == 200:
                gateway.batch_no += 1
                gateway.prev_hash = batch.batch_hash(made_batch.header)
        refused = next(r for r in responses if r.status != 200)
        assert refused.body["reason"] == "conflict", refused
    assert table_counts(url)["bundles"] == ROUNDS


def test_two_hosts_on_one_database_store_each_batch_once(postgres_url: str, tmp_path: Path) -> None:
    """Two ingest deployments (their own processes and ports, as on two machines) behind one database:
    a gateway's batches land on either, and the same batch sent to both is stored once."""
    gateways = [Gateway(key(10 + i)) for i in range(4)]
    devices = [sim_device(20 + i) for i in range(4)]
    register(postgres_url, gateways=gateways, devices=devices)
    with (
        IngestProcess(postgres_url, 2, tmp_path) as host_a,
        IngestProcess(postgres_url, 2, tmp_path) as host_b,
    ):
        for round_ in range(ROUNDS):
            made = [g.make([d.seal() for _ in range(5)]) for g, d in zip(gateways, devices, strict=True)]
            calls = [lambda m=m, h=h: send(h.port, m) for m in made for h in (host_a, host_b)]
            responses = at_once(calls)
            assert all(r.status == 200 for r in responses), responses
            assert Counter(r.body["status"] for r in responses) == {"stored": 4, "duplicate": 4}, round_
    assert table_counts(postgres_url) == {
        "batches": 4 * ROUNDS,
        "leaves": 20 * ROUNDS,
        "bundles": 20 * ROUNDS,
    }


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(workers: tuple[str, IngestProcess]) -> None:
    """A worker is killed (SIGKILL) while its batch's rows are written but not committed: nothing of the
    batch is stored, the supervisor starts another worker, and the gateway's retry stores it once.

    The worker is held mid-batch by a row lock the test takes: an uncommitted leaf with the hash of the
    batch's last bundle, on which the worker's own insert waits after it verified and wrote the rest."""
    url, ingest = workers
    gateway, device = Gateway(key(1)), sim_device(2)
    register(url, gateways=[gateway], devices=[device])
    assert send(ingest.port, gateway.make([device.seal()])).status == 200  # chain head: batch 0
    bundles = [device.seal() for _ in range(200)]
    made = gateway.make(bundles)
    with psycopg.connect(url, autocommit=False) as holder:
        head = holder.execute("SELECT hash FROM batches").fetchone()[0]
        holder.execute(
            "INSERT INTO leaves (bundle_hash, batch_hash, leaf_index) VALUES (%s, %s, 1000)",
            (batch.bundle_hash(bundles[-1]), head),
        )
        sender = threading.Thread(target=lambda: _send_and_keep(ingest.port, made, result), daemon=True)
        result: list[Response | BaseException] = []
        sender.start()
        victim = _worker_waiting_on_a_lock(url, ingest)
        import os
        import signal

        os.kill(victim, signal.SIGKILL)
        sender.join(30)
        holder.rollback()
    assert result and isinstance(result[0], BaseException | Response)
    assert table_counts(url) == {"batches": 1, "leaves": 1, "bundles": 1}  # the killed batch left nothing
    deadline = time.monotonic() + 30
    while victim in ingest.pids() or len(ingest.worker_pids()) != 3:
        assert time.monotonic() < deadline, "the supervisor did not replace the killed worker"
        time.sleep(0.1)
    retried = send(ingest.port, made)  # the gateway's retry: its request failed, its outbox kept the batch
    assert retried.status == 200 and retried.body["status"] == "stored", retried
    assert send(ingest.port, made).body["status"] == "duplicate"
    assert table_counts(url) == {"batches": 2, "leaves": 201, "bundles": 201}


def _send_and_keep(port: int, made: Batch, result: list) -> None:
    try:
        result.append(send(port, made))
    except BaseException as exc:  # the connection dies with the worker
        result.append(exc)


def _worker_waiting_on_a_lock(url: str, ingest: IngestProcess) -> int:
    """The pid of the ingest worker whose database session waits on a lock (its application_name)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND application_name LIKE 'pinseal-ingest[%'"
            ).fetchone()
            if row:
                pid = int(row[0].split("[")[1].rstrip("]"))
                assert pid in ingest.worker_pids()
                return pid
            time.sleep(0.05)
    raise AssertionError("no worker got to the held row")


def test_sqlite_workers_take_turns_and_store_once(tmp_path: Path) -> None:
    """SQLite with several workers: they serialise on the file's write lock, still exactly once."""
    path = str(tmp_path / "ingest.sqlite")
    gateway, device = Gateway(key(1)), sim_device(2)
    register(path, gateways=[gateway], devices=[device])
    with IngestProcess(path, 2, tmp_path) as ingest:
        for _ in range(3):
            made = gateway.make([device.seal() for _ in range(5)])
            statuses = Counter(r.body["status"] for r in at_once([lambda m=made: send(ingest.port, m)] * 4))
            assert statuses == {"stored": 1, "duplicate": 3}
    assert table_counts(path) == {"batches": 3, "leaves": 15, "bundles": 15}


def test_metrics_add_up_over_the_workers_even_after_one_died(workers: tuple[str, IngestProcess]) -> None:
    """A scrape lands on one worker at random; every worker answers with the sum over all of them, and
    the counts of a killed worker stay in it."""
    import os
    import signal

    from ingest_fixtures import request

    url, ingest = workers
    gateway, device = Gateway(key(1)), sim_device(2)
    register(url, gateways=[gateway], devices=[device])
    made = [gateway.make([device.seal()]) for _ in range(12)]
    for m in made:
        assert send(ingest.port, m).status == 200
    os.kill(ingest.worker_pids()[0], signal.SIGKILL)
    time.sleep(1)
    for _ in range(6):  # new connections: the kernel spreads them over the workers
        body = request(ingest.port, "GET", "/metrics").body
        assert 'pinseal_ingest_batches_stored_total{mode="bundles"} 12.0' in body, body


def test_workers_stop_when_their_supervisor_is_killed(postgres_url: str, tmp_path: Path) -> None:
    """SIGKILL of the supervisor leaves no orphaned worker serving the port unsupervised."""
    import os
    import signal

    ingest = IngestProcess(postgres_url, 2, tmp_path).wait_ready()
    workers = ingest.worker_pids()
    os.kill(ingest.process.pid, signal.SIGKILL)
    ingest.process.wait(10)
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{pid}") and _alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "workers outlived their supervisor"
        time.sleep(0.2)
    ingest.stop()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
