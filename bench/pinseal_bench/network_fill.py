"""The proof-lookup table: 10^6, then 10^7, really signed bundles loaded with COPY, and timed lookups.

Going through the ingest would take hours for 10^7 bundles; what a lookup meets is only the rows and
their indexes, so they are written straight into the ingest's own schema (made by `db.connect`) with
COPY, and they are the rows the ingest would have written: every bundle a real COSE bundle signed by its
device (one of a few thousand keys), every batch a real signed header over the Merkle root of its
leaves, each device's bundles a chain (seq, prev) and each gateway's batches too. The bundles' signed
times advance over months as the table grows, so the bundles table has several monthly partitions (made
first, with the ingest's `ensure_partition`), as a network's would.

Signing 10^7 bundles with the protocol's generic encoder would take a quarter of an hour; a device's
one-reading bundles differ only in seq, prev and time, so `TemplateSealer` encodes one bundle per device
with the protocol (`bundle.seal`) and splices the varying fields into those bytes (fixed-width integers:
seq and times are 4-byte CBOR integers here), signing with libsodium. It checks its bytes against
`bundle.seal` for every device's first bundle, so it cannot drift from the protocol unnoticed.

Work is split by gateway (each gateway's devices are its own), each worker process signing its gateways'
batches in chain order and COPYing them on its own connection.
"""

from __future__ import annotations

import multiprocessing
import random
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from pinseal_bench.network_load import seeded_key
from pinseal_ingest import db as ingest_db
from pinseal_ingest import queries
from pinseal_ingest.storage.postgres import PostgresDatabase, month_of
from pinseal_protocol import batch, cose, dcbor, keys, sodium
from pinseal_protocol import bundle as pbundle
from pinseal_protocol.senml import Reading, Record

SEQ_START = 1 << 24  # 4-byte CBOR integers from here to 2**32: every bundle has the same layout
T_START = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
STATUS = pbundle.Status(3900, -60, 86_400, 0, 0)
_SEQ_MARK, _T_MARK = 0x5EC0_5EC0, 0x7171_7171
_PREV_MARK = bytes.fromhex("9e" * 16)


def one_reading(t: int) -> list[Reading]:
    return [Reading(t, (Record("t", "Cel", 2150), Record("h", "%RH", 4500)))]


class TemplateSealer:
    """One device's one-reading bundles, byte for byte what `bundle.seal` makes, at a fraction of its cost."""

    def __init__(self, key: Any) -> None:
        self.key = key
        self.signer = sodium.Signer(key)
        self.kid = keys.key_id(keys.public_key_bytes(key))
        protected = dcbor.encode(pbundle.protected_header(self.kid))
        payload = dcbor.encode(
            pbundle.payload_map(
                boot=1,
                seq=_SEQ_MARK,
                prev=_PREV_MARK,
                status=STATUS,
                time_source=1,
                readings=one_reading(_T_MARK),
            )
        )
        marks = [(b"\x1a" + struct.pack(">I", _SEQ_MARK), "seq"), (_PREV_MARK, "prev")]
        marks.append((b"\x1a" + struct.pack(">I", _T_MARK), "t"))
        found = sorted((payload.index(mark), mark, name) for mark, name in marks)
        if any(payload.count(mark) != 1 for mark, _ in marks):
            raise ValueError("the bundle template's fields are not unique in its bytes")
        self.pieces: list[bytes] = []
        self.order: list[str] = []
        at = 0
        for pos, mark, name in found:
            self.pieces.append(payload[at : pos + (1 if name != "prev" else 0)])
            self.order.append(name)
            at = pos + len(mark)
        self.pieces.append(payload[at:])
        structure = cose.sig_structure(protected, payload)
        self.sig_prefix = structure[: -len(payload)]
        envelope = cose.sign1(payload, _Zero(), protected)
        assert envelope.endswith(b"\x58\x40" + bytes(64))
        self.env_prefix = envelope[: -len(payload) - 66]
        assert envelope[len(self.env_prefix) : -66] == payload

    def seal(self, seq: int, prev: bytes, t: int) -> bytes:
        if not (SEQ_START <= seq < 1 << 32 and 1 << 16 <= t < 1 << 32 and len(prev) == 16):
            raise ValueError("seq and t outside the template's fixed widths")
        values = {"seq": struct.pack(">I", seq), "prev": prev, "t": struct.pack(">I", t)}
        parts = [self.pieces[0]]
        for name, piece in zip(self.order, self.pieces[1:], strict=True):
            parts += (values[name], piece)
        payload = b"".join(parts)
        signature = self.signer.sign(self.sig_prefix + payload)
        return self.env_prefix + payload + b"\x58\x40" + signature

    def check(self, seq: int, prev: bytes, t: int) -> None:
        """This sealer's bytes are the protocol's."""
        made = self.seal(seq, prev, t)
        real = pbundle.seal(
            self.key, boot=1, seq=seq, prev=prev, status=STATUS, time_source=1, readings=one_reading(t)
        )
        if made != real:
            raise AssertionError("TemplateSealer differs from bundle.seal: fix the template")


class _Zero:
    def sign(self, _message: bytes) -> bytes:
        return bytes(64)


# -- the fill ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FillSpec:
    devices: int = 3000
    gateways: int = 20
    leaves_per_batch: int = 1000
    final_bundles: int = 10_000_000
    months: int = 6
    """The signed times of the final table span this many months."""

    @property
    def devices_per_gateway(self) -> int:
        return self.devices // self.gateways

    @property
    def step_s(self) -> int:
        """Seconds between a device's bundles."""
        per_device = max(1, self.final_bundles // self.devices)
        return max(1, self.months * 30 * 86400 // per_device)


BUNDLE_COLUMNS = "hash, t, kid, seq, last_seq, prev, link, n_readings, raw, ingest_time_flag"
DeviceState = tuple[int, bytes, int]  # next seq, prev, next time


def _hex(value: bytes) -> str:
    return "\\\\x" + value.hex()


def _fill_gateway(args: tuple[str, FillSpec, int, int, int, list[DeviceState], bytes, int]) -> dict[str, Any]:
    """Sign and COPY batches [first, first + n) of gateway g; returns its final chain and device states."""
    url, spec, g, first, n, states, prev_batch, sample = args
    gateway_key = seeded_key("fill-gateway", g)
    gateway_kid = keys.key_id(keys.public_key_bytes(gateway_key))
    sealers = [TemplateSealer(seeded_key("fill-device", g, d)) for d in range(spec.devices_per_gateway)]
    states = list(states)
    rng = random.Random(g * 1_000_003 + first)
    picked: list[bytes] = []
    now = time.time()
    with psycopg.connect(url, autocommit=True) as conn:
        for batch_no in range(first, first + n):
            bundle_lines, hashes, times = [], [], []
            for i in range(spec.leaves_per_batch):
                d = i % len(sealers)
                seq, prev, t = states[d]
                raw = sealers[d].seal(seq, prev, t)
                h = pbundle.bundle_hash(raw)
                link = h[: pbundle.PREV_SIZE]
                states[d] = (seq + 1, link, t + spec.step_s)
                seq_key = _hex(ingest_db.seq_key(seq))
                bundle_lines.append(
                    f"{_hex(h)}\t{t}\t{_hex(sealers[d].kid)}\t{seq_key}\t{seq_key}\t{_hex(prev)}\t"
                    f"{_hex(link)}\t1\t{_hex(raw)}\t\\N\n"
                )
                hashes.append(h)
                times.append(t)
            header = batch.sign_header(
                gateway_key,
                batch_no=batch_no,
                prev_hash=prev_batch,
                root=batch.batch_root(hashes),
                count=len(hashes),
                first_received=min(times),
                last_received=max(times) + 60,
                time_flags={},
            )
            batch_hash = batch.batch_hash(header)
            fields = (
                _hex(batch_hash), _hex(gateway_kid), str(batch_no), _hex(prev_batch),
                _hex(batch.batch_root(hashes)), str(len(hashes)), str(min(times)), str(max(times) + 60),
                "bundles", _hex(header), repr(now), "2",
            )  # fmt: skip
            leaf_lines = [f"{_hex(h)}\t{_hex(batch_hash)}\t{i}\t\\N\n" for i, h in enumerate(hashes)]
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(
                    "COPY batches (hash, gateway_kid, batch_no, prev_hash, root, count, first_received,"
                    " last_received, mode, header, received_at, version) FROM STDIN"
                ) as copy:
                    copy.write("\t".join(fields) + "\n")
                with cur.copy(
                    "COPY leaves (bundle_hash, batch_hash, leaf_index, gateway_time_flag) FROM STDIN"
                ) as copy:
                    copy.write("".join(leaf_lines))
                with cur.copy(f"COPY bundles ({BUNDLE_COLUMNS}) FROM STDIN") as copy:
                    copy.write("".join(bundle_lines))
            picked += rng.sample(hashes, min(sample, len(hashes)))
            prev_batch = batch_hash
    return {"gateway": g, "states": states, "prev_batch": prev_batch, "sample": picked}


def _register(url: str, spec: FillSpec) -> list[list[DeviceState]]:
    """The fill's gateways and devices in the registry tables, and each device's fresh chain state."""
    conn = ingest_db.connect(url)
    gateway_rows, device_rows, states = [], [], []
    now = time.time()
    for g in range(spec.gateways):
        public = keys.public_key_bytes(seeded_key("fill-gateway", g))
        gateway_rows.append((keys.key_id(public), public, f"fill-gw-{g}", now))
        row = []
        for d in range(spec.devices_per_gateway):
            sealer = TemplateSealer(seeded_key("fill-device", g, d))
            t = T_START + (g * spec.devices_per_gateway + d) % spec.step_s
            sealer.check(SEQ_START, pbundle.ZERO_PREV, t)
            public = keys.public_key_bytes(sealer.key)
            device_rows.append((sealer.kid, public, f"fill-{g}-{d}", now))
            row.append((SEQ_START, pbundle.ZERO_PREV, t))
        states.append(row)
    with conn.transaction():
        conn.bulk_insert("gateways", ("kid", "public_key", "label", "added_at"), gateway_rows)
        conn.bulk_insert("devices", ("kid", "public_key", "label", "added_at"), device_rows)
    conn.close()
    return states


def make_partitions(url: str, spec: FillSpec) -> int:
    """Every month the fill's times reach, made as the ingest makes them; returns how many."""
    conn = ingest_db.connect(url)
    assert isinstance(conn, PostgresDatabase)
    end = T_START + spec.step_s * (spec.final_bundles // spec.devices + 2) + 86400
    months = sorted({m for t in range(T_START, end, 86400) if (m := month_of(t)) is not None})
    for month in months:
        conn.ensure_partition(month)
    conn.close()
    return len(months)


class Filler:
    """Grows the lookup table in steps (10^6, then on to 10^7), continuing every chain."""

    def __init__(self, url: str, spec: FillSpec, processes: int) -> None:
        self.url = url
        self.spec = spec
        self.processes = processes
        self.partitions = make_partitions(url, spec)
        self.states = _register(url, spec)
        self.heads = [(0, batch.ZERO_HASH)] * spec.gateways
        self.bundles = 0
        self.sample: list[bytes] = []

    def grow_to(self, total: int, sample_per_batch: int = 2) -> float:
        """Add batches until the table holds `total` bundles; returns the seconds it took."""
        spec = self.spec
        batches = (total - self.bundles) // spec.leaves_per_batch
        per_gateway = [batches // spec.gateways + (g < batches % spec.gateways) for g in range(spec.gateways)]
        tasks = [
            (self.url, spec, g, self.heads[g][0], per_gateway[g], self.states[g], self.heads[g][1],
             sample_per_batch)
            for g in range(spec.gateways)
            if per_gateway[g]
        ]  # fmt: skip
        started = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(self.processes) as pool:
            for done in pool.imap_unordered(_fill_gateway, tasks):
                g = done["gateway"]
                self.states[g] = done["states"]
                self.heads[g] = (self.heads[g][0] + per_gateway[g], done["prev_batch"])
                self.sample += done["sample"]
        self.bundles += batches * spec.leaves_per_batch
        return time.perf_counter() - started

    def settle(self) -> float:
        """VACUUM (ANALYZE) and CHECKPOINT: the table at rest, as a network's older rows are, rather than
        autovacuum and the checkpointer working through a bulk load while the lookups are timed."""
        started = time.perf_counter()
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE)")
            conn.execute("CHECKPOINT")
        return time.perf_counter() - started


# -- the lookup ------------------------------------------------------------------------------------------


PROOF_FUNCTION = "pinseal_ingest.queries.bundle_proof"


def time_lookups(url: str, hashes: list[bytes], n: int, seed: int = 17) -> dict[str, float]:
    """p50/p99/max of n lookups of random stored bundle hashes through the Database interface."""
    picks = random.Random(seed).choices(hashes, k=n)
    conn = ingest_db.connect(url)
    try:
        for h in picks[:20]:  # connection set up, catalog cached: what a running ingest has
            queries.bundle_proof(conn, h)
        times = []
        for h in picks:
            started = time.perf_counter()
            found = queries.bundle_proof(conn, h)
            times.append((time.perf_counter() - started) * 1000)
            if found is None:
                raise AssertionError(f"bundle {h.hex()} not found")
    finally:
        conn.close()
    times.sort()
    return {
        "lookups": n,
        "p50_ms": round(times[len(times) // 2], 3),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
        "max_ms": round(times[-1], 3),
    }
