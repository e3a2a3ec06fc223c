"""The network benchmark's backlog: gateways' signed batch chains built once, and the process that POSTs them.

`build` signs every gateway's devices' bundles (16 readings each, as the backlog benchmark) and seals
each gateway's chain of uplink bodies (bundles mode, version 2 headers, as a gateway sends after an
outage), in parallel, and caches the result under build/bench/network-cache/ keyed by its parameters:
none of this is inside a timed window, and a rerun skips it. Keys come from a fixed seed, so the
registration (`register`) is recomputed from the cache alone.

Run as a module it is the load generator: a process of its own (its CPU counted apart from what it
loads), which loads the cache, prints `ready`, waits for `go` on stdin, then POSTs every gateway's chain
in order (a batch only once its predecessor is answered 200) with at most `--in-flight` requests open,
each on a new connection so that the kernel spreads them over the ingest's SO_REUSEPORT workers. 5xx
answers and broken connections are retried, as a gateway's uplink does; any other answer is a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_devkit.simdevice import SimDevice
from pinseal_ingest import registry
from pinseal_ingest.storage import Database
from pinseal_protocol import batch, keys

READINGS_PER_BUNDLE = 16
CACHE_VERSION = 1


@dataclass(frozen=True)
class BacklogSpec:
    readings: int = 1_000_000
    gateways: int = 100
    devices_per_gateway: int = 10
    batch_bundles: int = 500

    @property
    def bundles(self) -> int:
        return self.readings // READINGS_PER_BUNDLE

    def check(self) -> None:
        if self.readings % (READINGS_PER_BUNDLE * self.gateways):
            raise ValueError(f"readings must be a multiple of {READINGS_PER_BUNDLE} x gateways")

    @property
    def name(self) -> str:
        return (
            f"backlog-v{CACHE_VERSION}-r{self.readings}-g{self.gateways}-d{self.devices_per_gateway}"
            f"-b{self.batch_bundles}.cbor"
        )


def seeded_key(*parts: object) -> Ed25519PrivateKey:
    """A fixed key per name: the same fleet on every run, so a cached backlog stays registrable."""
    seed = hashlib.sha256("/".join(["pinseal-bench-network", *map(str, parts)]).encode()).digest()
    return keys.load_private_key(seed)


def _gateway_chain(args: tuple[BacklogSpec, int, int]) -> dict[str, Any]:
    """One gateway: its devices' bundles (round robin into batches) and its chain of uplink bodies."""
    spec, g, now_s = args
    gateway_key = seeded_key("gateway", g)
    devices = [SimDevice(seeded_key("device", g, d)) for d in range(spec.devices_per_gateway)]
    per_gateway = spec.bundles // spec.gateways
    counts = [per_gateway // len(devices) + (d < per_gateway % len(devices)) for d in range(len(devices))]
    signed = [
        device.presign(n, per_bundle=READINGS_PER_BUNDLE, now_s=now_s)
        for device, n in zip(devices, counts, strict=True)
    ]
    order = [signed[d][i] for i in range(max(counts)) for d in range(len(devices)) if i < counts[d]]
    bodies, prev = [], batch.ZERO_HASH
    first_received = now_s - READINGS_PER_BUNDLE * max(counts) - 1
    for no, start in enumerate(range(0, len(order), spec.batch_bundles)):
        bundles = order[start : start + spec.batch_bundles]
        header = batch.sign_header(
            gateway_key,
            batch_no=no,
            prev_hash=prev,
            root=batch.batch_root([batch.bundle_hash(b) for b in bundles]),
            count=len(bundles),
            first_received=first_received,
            last_received=now_s,
            time_flags={},
        )
        bodies.append(batch.build_uplink(header, bundles, "bundles", time_flags={}))
        prev = batch.batch_hash(header)
    return {
        "gateway": keys.public_key_bytes(gateway_key),
        "devices": [d.public for d in devices],
        "bodies": bodies,
    }


def build(spec: BacklogSpec, cache_dir: Path, processes: int | None = None) -> tuple[Path, float]:
    """The cached backlog file, built (in parallel) if absent, and the seconds building took (0: cached).

    The cache is keyed by the spec and CACHE_VERSION: bump it when what is built here changes."""
    spec.check()
    path = cache_dir / spec.name
    if path.exists():
        return path, 0.0
    cache_dir.mkdir(parents=True, exist_ok=True)
    now_s = int(time.time())
    started = time.perf_counter()
    print(f"network: signing {spec.bundles:,} bundles for {spec.gateways} gateways (cached)", flush=True)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        chains = pool.map(_gateway_chain, [(spec, g, now_s) for g in range(spec.gateways)])
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(cbor2.dumps({"spec": spec.__dict__, "chains": chains}))
    tmp.replace(path)
    seconds = time.perf_counter() - started
    print(f"network: backlog built in {seconds:.0f} s -> {path}", flush=True)
    return path, seconds


def load(path: Path) -> list[dict[str, Any]]:
    return list(cbor2.loads(path.read_bytes())["chains"])


def register(conn: Database, chains: list[dict[str, Any]]) -> None:
    """Every gateway and device of the backlog, through the registry's own functions."""
    for g, chain in enumerate(chains):
        registry.add(conn, "gateways", chain["gateway"], label=f"bench-gw-{g}")
    entries = [
        {"public_key": public.hex(), "label": f"bench-{g}-{d}"}
        for g, chain in enumerate(chains)
        for d, public in enumerate(chain["devices"])
    ]
    registry.import_devices(conn, entries)


# -- the load generator ------------------------------------------------------------------------------


@dataclass
class PostStats:
    posted: int = 0
    retries: int = 0
    failures: int = 0
    first_failure: str = ""


async def _post_chain(
    session: Any,
    url: str,
    bodies: list[tuple[bytes, str]],
    gate: asyncio.Semaphore,
    stats: PostStats,
    deadline: float,
) -> None:
    import aiohttp

    for body, idempotency in bodies:
        headers = {"Content-Type": "application/cbor", "Idempotency-Key": idempotency}
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("the load generator's deadline passed")
            async with gate:
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        status = response.status
                        text = await response.text()
                except (aiohttp.ClientError, OSError) as exc:
                    status, text = 0, str(exc)
            if status == 200:
                stats.posted += 1
                break
            if status == 0 or status >= 500:
                stats.retries += 1
                await asyncio.sleep(0.05)
                continue
            stats.failures += 1
            stats.first_failure = stats.first_failure or f"{status}: {text[:300]}"
            return  # the rest of this chain would only meet chain gaps


async def post_all(
    url: str, chains: list[list[tuple[bytes, str]]], in_flight: int, timeout_s: float
) -> PostStats:
    import aiohttp

    stats = PostStats()
    gate = asyncio.Semaphore(in_flight)
    connector = aiohttp.TCPConnector(limit=in_flight, force_close=True)
    timeout = aiohttp.ClientTimeout(total=300)
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(_post_chain(session, url, c, gate, stats, deadline) for c in chains))
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description="POST cached batch chains to an ingest (after `go`)")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT/v1/batches")
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args()
    chains = [  # the Idempotency-Key (the batch hash) worked out before timing, as a gateway stores it
        [(body, batch.batch_hash(batch.decode_uplink(body).header).hex()) for body in chain["bodies"]]
        for chain in load(args.cache)
    ]
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 2
    started = time.perf_counter()
    stats = asyncio.run(post_all(args.url, chains, args.in_flight, args.timeout))
    print(json.dumps({**stats.__dict__, "seconds": time.perf_counter() - started}), flush=True)
    return 0 if stats.failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
