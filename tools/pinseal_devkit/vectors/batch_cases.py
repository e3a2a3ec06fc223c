"""The normative batch vectors of protocol/vectors/batch/ (docs/protocol.md §9), generated deterministically.

Written by `python -m pinseal_devkit.vectors OUTDIR` (into OUTDIR/batch) with the same fixed keys and
times as the bundle and ack vectors. They pin the uplink message in both modes and both header
versions: version 1 (no time flags, still accepted) and version 2, whose header signs the SHA-256 of the
time flags map the uplink carries. Each rejected vector has exactly one defect.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from pinseal_devkit.test_keys import (
    DEVICE_KEY,
    DEVICE_PUB,
    DEVICE_SEED,
    GATEWAY_KEY,
    GATEWAY_KID,
    GATEWAY_PUB,
    GATEWAY_SEED,
)
from pinseal_devkit.vectors.inputs import STATUS, T0, thp
from pinseal_protocol import batch, bundle, dcbor

TEN_YEARS_S = 10 * 365 * 86400
RECEIVED = (T0 + 5, T0 + 65)  # the gateway's receive window for every batch here


def device_bundles() -> list[bytes]:
    """Three chained bundles: a plausible reading, one at epoch 0, one ten years ahead (NTP time)."""
    out, prev = [], bundle.ZERO_PREV
    for seq, time_s in ((1000, T0), (1001, 0), (1002, T0 + TEN_YEARS_S)):
        raw = bundle.seal(
            DEVICE_KEY,
            boot=3,
            seq=seq,
            prev=prev,
            status=STATUS,
            time_source=1,
            readings=[thp(time_s, 2150, 4512, 101325)],
        )
        out.append(raw)
        prev = bundle.link_of(raw)
    return out


BUNDLES = device_bundles()
HASHES = [batch.bundle_hash(b) for b in BUNDLES]
FLAGS = {1: "stale", 2: "future"}  # what a gateway with a correct clock flags in BUNDLES


def header_fields(version: int) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "batch_no": 0,
        "prev_hash": batch.ZERO_HASH,
        "root": batch.batch_root(HASHES),
        "count": len(BUNDLES),
        "first_received": RECEIVED[0],
        "last_received": RECEIVED[1],
    }
    if version == 2:
        fields["time_flags"] = FLAGS
    return fields


def flags_to_json(flags: Mapping[int, str] | None) -> list[list[Any]] | None:
    """JSON has no integer keys: the map as [[leaf index, flag], ...] in index order."""
    return None if flags is None else [[i, flags[i]] for i in sorted(flags)]


def flags_from_json(pairs: Sequence[Sequence[Any]] | None) -> dict[int, str] | None:
    return None if pairs is None else {int(i): str(f) for i, f in pairs}


def batch_vector(
    description: str,
    *,
    header: bytes,
    mode: batch.Mode,
    uplink: bytes,
    signed_flags: Mapping[int, str] | None,
    expect: str,
    reproducible: bool = False,
) -> dict[str, Any]:
    version = 2 if signed_flags is not None else 1
    return {
        "description": description,
        "kind": "batch",
        "seed": GATEWAY_SEED.hex(),
        "public_key": GATEWAY_PUB.hex(),
        "key_id": GATEWAY_KID.hex(),
        "device": {"seed": DEVICE_SEED.hex(), "public_key": DEVICE_PUB.hex()},
        "input": {
            "version": version,
            "mode": mode,
            "batch_no": 0,
            "prev": batch.ZERO_HASH.hex(),
            "first_received": RECEIVED[0],
            "last_received": RECEIVED[1],
            "bundles": [b.hex() for b in BUNDLES],
            "time_flags": flags_to_json(signed_flags),
        },
        "reproducible": reproducible,
        "header": header.hex(),
        "batch_hash": batch.batch_hash(header).hex(),
        "root": batch.batch_root(HASHES).hex(),
        "time_flags_hash": None if signed_flags is None else batch.time_flags_hash(signed_flags).hex(),
        "uplink": uplink.hex(),
        "expect": expect,
    }


def batch_vectors() -> dict[str, dict[str, Any]]:
    v: dict[str, dict[str, Any]] = {}
    v1 = batch.sign_header(GATEWAY_KEY, **header_fields(1))
    v2 = batch.sign_header(GATEWAY_KEY, **header_fields(2))
    for mode in batch.MODES:
        v[f"batch_v1_{mode}"] = batch_vector(
            f"A version 1 batch (no time flags) of three bundles in {mode!r} mode: still accepted.",
            header=v1,
            mode=mode,
            uplink=batch.build_uplink(v1, BUNDLES, mode),
            signed_flags=None,
            expect="accept",
            reproducible=True,
        )
        v[f"batch_v2_{mode}"] = batch_vector(
            f"A version 2 batch in {mode!r} mode: the gateway flags leaf 1 (a reading at epoch 0) 'stale'"
            " and leaf 2 (ten years ahead) 'future'; its header signs the flags map's SHA-256.",
            header=v2,
            mode=mode,
            uplink=batch.build_uplink(v2, BUNDLES, mode, FLAGS),
            signed_flags=FLAGS,
            expect="accept",
            reproducible=True,
        )
    none = batch.sign_header(GATEWAY_KEY, **{**header_fields(2), "time_flags": {}})
    v["batch_v2_no_flags"] = batch_vector(
        "A version 2 batch whose gateway flagged nothing: it signs (and the uplink carries) the empty map.",
        header=none,
        mode="bundles",
        uplink=batch.build_uplink(none, BUNDLES, "bundles", {}),
        signed_flags={},
        expect="accept",
        reproducible=True,
    )
    v["batch_v2_flag_changed"] = batch_vector(
        "batch_v2_bundles with leaf 2's flag changed to 'stale' in the (unsigned) uplink.",
        header=v2,
        mode="bundles",
        uplink=batch.encode_uplink(v2, bundles=BUNDLES, time_flags={1: "stale", 2: "stale"}),
        signed_flags=FLAGS,
        expect="bad_proof",
    )
    v["batch_v2_flags_dropped"] = batch_vector(
        "batch_v2_bundles without uplink key 4: the flags the header signs were dropped on the way.",
        header=v2,
        mode="bundles",
        uplink=batch.encode_uplink(v2, bundles=BUNDLES),
        signed_flags=FLAGS,
        expect="bad_proof",
    )
    v["batch_v1_with_flags"] = batch_vector(
        "batch_v1_bundles plus a time flags map that a version 1 header cannot sign.",
        header=v1,
        mode="bundles",
        uplink=batch.encode_uplink(v1, bundles=BUNDLES, time_flags=FLAGS),
        signed_flags=None,
        expect="bad_proof",
    )
    payload = batch.header_payload(gateway_kid=GATEWAY_KID, **header_fields(1))
    payload[batch.K_VERSION] = 2
    no_hash = batch.sign_header_payload(GATEWAY_KEY, GATEWAY_KID, dcbor.encode(payload))
    v["batch_v2_without_flags_hash"] = batch_vector(
        "A header of version 2 without its time flags hash (payload key 8).",
        header=no_hash,
        mode="bundles",
        uplink=batch.encode_uplink(no_hash, bundles=BUNDLES, time_flags=FLAGS),
        signed_flags=FLAGS,
        expect="invalid_payload",
    )
    payload = batch.header_payload(gateway_kid=GATEWAY_KID, **header_fields(2))
    payload[batch.K_VERSION] = 3
    v3 = batch.sign_header_payload(GATEWAY_KEY, GATEWAY_KID, dcbor.encode(payload))
    v["batch_unsupported_version"] = batch_vector(
        "A header of version 3.",
        header=v3,
        mode="bundles",
        uplink=batch.encode_uplink(v3, bundles=BUNDLES, time_flags=FLAGS),
        signed_flags=FLAGS,
        expect="unsupported_version",
    )
    return v
