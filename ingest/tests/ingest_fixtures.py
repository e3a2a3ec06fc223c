"""Helpers for the ingest tests: devices (pinseal_devkit's one SimDevice), a simulated gateway, and a
real ingest on a loopback port.

Plainly named (not conftest) so tests import it explicitly; file names are unique across the repo
because pytest puts every tests folder on sys.path.
"""

import asyncio
import http.client
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_devkit.simdevice import SimDevice
from pinseal_ingest import db, registry
from pinseal_ingest.api import MAX_BODY
from pinseal_ingest.server import serve
from pinseal_protocol import batch, keys

T0 = 1_700_000_000


def key(n: int) -> Ed25519PrivateKey:
    """A fixed test key (distinct per n)."""
    return keys.load_private_key(bytes([n]) * 32)


def sim_device(n: int, *, seq: int = 0) -> SimDevice:
    """The host's simulated device with the fixed key `key(n)`, on a fixed clock from T0 (reading k at
    T0 + k): its bundles are the same bytes on every run and fall in the batches' window T0 .. T0 + 60."""
    return SimDevice(key(n), seq=seq, epoch_s=T0)


@dataclass(frozen=True)
class Batch:
    header: bytes
    body: bytes

    @property
    def hash_hex(self) -> str:
        return batch.batch_hash(self.header).hex()


@dataclass
class Gateway:
    """A gateway building its batch chain; `make` can be told to lie for negative tests."""

    private: Ed25519PrivateKey
    batch_no: int = 0
    prev_hash: bytes = batch.ZERO_HASH
    sent: list[Batch] = field(default_factory=list)

    @property
    def public_hex(self) -> str:
        return keys.public_key_bytes(self.private).hex()

    def make(
        self,
        bundles: list[bytes],
        mode: batch.Mode = "bundles",
        *,
        advance: bool = True,
        batch_no: int | None = None,
        prev_hash: bytes | None = None,
        root: bytes | None = None,
        count: int | None = None,
        signer: Ed25519PrivateKey | None = None,
    ) -> Batch:
        hashes = [batch.bundle_hash(b) for b in bundles]
        header = batch.sign_header(
            signer or self.private,
            batch_no=self.batch_no if batch_no is None else batch_no,
            prev_hash=self.prev_hash if prev_hash is None else prev_hash,
            root=batch.batch_root(hashes) if root is None else root,
            count=len(bundles) if count is None else count,
            first_received=T0,
            last_received=T0 + 60,
        )
        made = Batch(header, batch.build_uplink(header, bundles, mode))
        if advance:
            self.batch_no += 1
            self.prev_hash = batch.batch_hash(header)
            self.sent.append(made)
        return made


@dataclass
class Response:
    status: int
    body: Any


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Response:
    """One HTTP request to an ingest on 127.0.0.1:`port`; a JSON answer decoded, other text as text."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    is_json = resp.getheader("Content-Type", "").startswith("application/json")
    return Response(resp.status, json.loads(data) if is_json else data.decode())


class IngestServer:
    """`pinseal_ingest.server.serve` on a free loopback port, in a thread with its own event loop."""

    def __init__(self, db_path: str | Path, *, max_body: int = MAX_BODY) -> None:
        self.db_path = db_path
        self.max_body = max_body
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self.port = 0
        self._error: BaseException | None = None

    def _main(self) -> None:
        async def go() -> None:
            self._stop = asyncio.Event()
            await serve(
                self.db_path, "127.0.0.1", 0, max_body=self.max_body, stop=self._stop, on_ready=self._on_ready
            )

        try:
            self._loop.run_until_complete(go())
        except BaseException as exc:  # surfaced by __enter__
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    def _on_ready(self, addresses: list[str]) -> None:
        self.port = int(addresses[0].rpartition(":")[2])
        self._ready.set()

    def __enter__(self) -> "IngestServer":
        self._thread.start()
        assert self._ready.wait(10), "ingest did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *_: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def post_chunked(self, chunks: list[bytes]) -> Response:
        """POST with Transfer-Encoding: chunked, so only the server's streaming limit can stop it."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(
                "POST",
                "/v1/batches",
                body=iter(chunks),
                headers={"Content-Type": "application/cbor"},
                encode_chunked=True,
            )
            resp = conn.getresponse()
            return Response(resp.status, json.loads(resp.read()))
        finally:
            conn.close()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        return request(self.port, method, path, body, headers)

    def post(
        self, body: bytes, *, idempotency_key: str | None = None, content_type: str = "application/cbor"
    ) -> Response:
        headers = {"Content-Type": content_type}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return self.request("POST", "/v1/batches", body, headers)

    def send(self, made: Batch) -> Response:
        """POST a batch the way the gateway's uplink does (with its idempotency key)."""
        return self.post(made.body, idempotency_key=made.hash_hex)

    def get(self, path: str) -> Response:
        return self.request("GET", path)


def register(
    db_path: str | Path, *, gateways: Sequence[Gateway] = (), devices: Sequence[SimDevice] = ()
) -> None:
    conn = db.connect(db_path)
    for gw in gateways:
        registry.add(conn, "gateways", bytes.fromhex(gw.public_hex))
    for dev in devices:
        registry.add(conn, "devices", dev.public)
    conn.close()


def revoke(db_path: str | Path, table: registry.Table, public_hex: str) -> None:
    conn = db.connect(db_path)
    registry.revoke(conn, table, keys.key_id(bytes.fromhex(public_hex)))
    conn.close()


def table_counts(db_path: str | Path) -> dict[str, int]:
    """Rows of what a batch writes (rejections excluded)."""
    conn = db.connect(db_path)
    try:
        return {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("batches", "leaves", "bundles")
        }
    finally:
        conn.close()


def rejection_rows(db_path: str | Path) -> list[tuple[str, int | None, bytes | None]]:
    conn = db.connect(db_path)
    try:
        rows = conn.execute("SELECT reason, bundle_index, evidence FROM rejections ORDER BY id").fetchall()
        return [tuple(row) for row in rows]
    finally:
        conn.close()
