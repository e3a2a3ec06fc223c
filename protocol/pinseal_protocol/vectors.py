"""The normative test vectors of protocol/vectors/ (docs/protocol.md), generated deterministically.

    python -m pinseal_protocol.vectors OUTDIR

Fixed seeds (RFC 8032 §7.1 test keys), fixed times and Ed25519's deterministic signatures make the
output identical on every run, so `make vectors` followed by `git diff` shows exactly what changed.
Each file is self-contained; protocol/vectors/README.md describes the fields.
"""

import hashlib
import json
import struct
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pinseal_protocol import ack, bundle, cose, dcbor, keys, senml
from pinseal_protocol.bundle import ZERO_PREV, Status
from pinseal_protocol.dcbor import DecimalFraction, head
from pinseal_protocol.senml import Reading, Record

# RFC 8032 §7.1 TEST 1 (device), TEST 2 (gateway), TEST 3 (another device / an impostor gateway).
DEVICE_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
GATEWAY_SEED = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
OTHER_SEED = bytes.fromhex("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7")
# RFC 8032 §7.4 "blank" Ed448 secret key (also the COSE WG eddsa-sig-02 key).
ED448_SEED = bytes.fromhex(
    "6c82a562cb808d10d632be89c8513ebf6c929f34ddfa8c9f63c9960ef6e348a3"
    "528c8a3fcc2f044e39a3fc5b94492f8f032e7549a20098f95b"
)

T0 = 1767225600  # 2026-01-01T00:00:00Z
PERIOD = 60

DEVICE_KEY = keys.load_private_key(DEVICE_SEED)
GATEWAY_KEY = keys.load_private_key(GATEWAY_SEED)
OTHER_KEY = keys.load_private_key(OTHER_SEED)
DEVICE_PUB = keys.public_key_bytes(DEVICE_KEY)
GATEWAY_PUB = keys.public_key_bytes(GATEWAY_KEY)
OTHER_PUB = keys.public_key_bytes(OTHER_KEY)
DEVICE_KID = keys.key_id(DEVICE_PUB)
GATEWAY_KID = keys.key_id(GATEWAY_PUB)
OTHER_KID = keys.key_id(OTHER_PUB)


# ---- JSON form of readings (shared with the tests) -------------------------------------------------


def value_to_json(value: senml.Value) -> Any:
    """Decimal fraction -> [exponent, mantissa]; integer -> integer."""
    if isinstance(value, DecimalFraction):
        return [value.exponent, value.mantissa]
    return value


def value_from_json(value: Any) -> senml.Value:
    if isinstance(value, list):
        return DecimalFraction(value[0], value[1])
    return int(value)


def readings_to_json(readings: Sequence[Reading]) -> list[dict[str, Any]]:
    out = []
    for reading in readings:
        records = []
        for record in reading.records:
            item: dict[str, Any] = {"n": record.name}
            if record.unit is not None:
                item["u"] = record.unit
            if record.string_value is not None:
                item["vs"] = record.string_value
            else:
                assert record.value is not None
                item["v"] = value_to_json(record.value)
            records.append(item)
        out.append({"time": reading.time, "records": records})
    return out


def readings_from_json(items: list[dict[str, Any]]) -> tuple[Reading, ...]:
    return tuple(
        Reading(
            item["time"],
            tuple(
                Record(
                    r["n"],
                    r.get("u"),
                    value=value_from_json(r["v"]) if "v" in r else None,
                    string_value=r.get("vs"),
                )
                for r in item["records"]
            ),
        )
        for item in items
    )


# ---- inputs ----------------------------------------------------------------------------------------


def thp(time: int, t: int, h: int, p: int) -> Reading:
    """A temperature/humidity/pressure reading from the drivers' fixed-point outputs."""
    return Reading(
        time,
        (
            Record("t", "Cel", DecimalFraction(-2, t)),
            Record("h", "%RH", DecimalFraction(-2, h)),
            Record("p", "Pa", p),
        ),
    )


def series(n: int, start: int = T0) -> tuple[Reading, ...]:
    return tuple(thp(start + PERIOD * i, 2150 + 3 * i, 4512 - 7 * i, 101325 + i) for i in range(n))


U64_EDGES = ((2**63, "2_63"), (2**64 - 1, "max"))
STATUS = Status(battery_mv=3912, rssi_dbm=-67, uptime_s=3600, dropped=0, reset_cause=0)


def inputs(
    *,
    boot: int = 3,
    seq: int = 1000,
    prev: bytes = ZERO_PREV,
    status: Status = STATUS,
    time_source: int = 1,
    readings: Sequence[Reading] | None = None,
) -> dict[str, Any]:
    return {
        "boot": boot,
        "seq": seq,
        "prev": prev,
        "status": status,
        "time_source": time_source,
        "readings": tuple(readings if readings is not None else series(1)),
    }


def payload_of(fields: dict[str, Any], **extra: Any) -> dict[int, Any]:
    return bundle.payload_map(**fields, extra=extra.get("extra"))


def seal(fields: dict[str, Any]) -> bytes:
    return bundle.seal(DEVICE_KEY, **fields)


def seal_map(payload: dict[int, Any]) -> bytes:
    return bundle.seal_payload(DEVICE_KEY, DEVICE_KID, dcbor.encode(payload))


def seal_bytes(payload: bytes) -> bytes:
    return bundle.seal_payload(DEVICE_KEY, DEVICE_KID, payload)


def raw_map(pairs: Sequence[tuple[Any, bytes]]) -> bytes:
    """A map from keys and pre-encoded values, in the order given (for non-deterministic vectors)."""
    return head(5, len(pairs)) + b"".join(dcbor.encode(k) + v for k, v in pairs)


def envelope(protected: bytes, unprotected: bytes, payload: bytes, signature: bytes) -> bytes:
    """A tagged COSE_Sign1 from pre-encoded parts."""
    return b"\xd2\x84" + protected + unprotected + payload + signature


def parts(message: bytes) -> list[Any]:
    """[protected, unprotected, payload, signature] of a tagged COSE_Sign1."""
    return list(cbor2.loads(message, semantic_decoders={18: lambda v, _i: v}))


# ---- vector records --------------------------------------------------------------------------------


def bundle_vector(
    description: str,
    fields: dict[str, Any],
    data: bytes,
    expect: str,
    *,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    payload = parts(data)[2] if _is_sign1(data) else b""
    vector: dict[str, Any] = {
        "description": description,
        "kind": "bundle",
        "seed": DEVICE_SEED.hex(),
        "public_key": DEVICE_PUB.hex(),
        "key_id": DEVICE_KID.hex(),
        "input": {
            "boot": fields["boot"],
            "seq": fields["seq"],
            "prev": fields["prev"].hex(),
            "status": fields["status"].to_cbor(),
            "time_source": fields["time_source"],
            "readings": readings_to_json(fields["readings"]),
        },
        "reproducible": data == seal(fields),
        "payload": payload.hex() if isinstance(payload, bytes) else "",
        "bundle": data.hex(),
        "bundle_hash": bundle.bundle_hash(data).hex(),
        "size": len(data),
    }
    if context:
        vector["context"] = context
    vector["expect"] = expect
    return vector


def _is_sign1(data: bytes) -> bool:
    try:
        value = parts(data)
    except Exception:
        return False
    return isinstance(value, list) and len(value) >= 3


def ack_input(
    device: bytes = DEVICE_KID, seq: int = 1000, bundle_hash: bytes = b"", time: int = T0 + 5
) -> dict:
    return {"device": device, "seq": seq, "bundle_hash": bundle_hash, "time": time}


def ack_vector(
    description: str,
    fields: dict[str, Any],
    data: bytes,
    expect: str,
    *,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    vector: dict[str, Any] = {
        "description": description,
        "kind": "ack",
        "seed": GATEWAY_SEED.hex(),
        "public_key": GATEWAY_PUB.hex(),
        "key_id": GATEWAY_KID.hex(),
        "device_key_id": DEVICE_KID.hex(),
        "input": {
            "device": fields["device"].hex(),
            "seq": fields["seq"],
            "bundle_hash": fields["bundle_hash"].hex(),
            "time": fields["time"],
        },
        "reproducible": data == ack.sign_ack(GATEWAY_KEY, **fields),
        "payload": parts(data)[2].hex() if _is_sign1(data) else "",
        "ack": data.hex(),
        "ack_hash": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    if context:
        vector["context"] = context
    vector["expect"] = expect
    return vector


def flip_signature_bit(data: bytes) -> bytes:
    """Flip the lowest bit of the signature's first byte (the signature is the last 64 bytes)."""
    out = bytearray(data)
    out[-64] ^= 0x01
    return bytes(out)


# ---- the vectors -----------------------------------------------------------------------------------


def bundle_vectors() -> dict[str, dict[str, Any]]:
    v: dict[str, dict[str, Any]] = {}

    def add(name: str, description: str, fields: dict[str, Any], data: bytes, expect: str, **kw: Any) -> None:
        v[name] = bundle_vector(description, fields, data, expect, **kw)

    # -- accepted ----------------------------------------------------------------------------------
    one = inputs()
    one_bytes = seal(one)
    add(
        "bundle_one_reading_thp",
        "First bundle a device seals (prev = 16 zero bytes): one reading of temperature, humidity and "
        "pressure, NTP time (time source 1). The size budget's reference case (<= 200 bytes).",
        one,
        one_bytes,
        "accept",
    )
    chained = inputs(seq=1001, prev=bundle.link_of(one_bytes), readings=series(1, T0 + PERIOD))
    chained_bytes = seal(chained)
    add(
        "bundle_chained",
        "The bundle after bundle_one_reading_thp: prev = SHA-256(that bundle)[:16], seq + 1.",
        chained,
        chained_bytes,
        "accept",
    )
    two = inputs(seq=1002, prev=bundle.link_of(chained_bytes), readings=series(2, T0 + 2 * PERIOD))
    add("bundle_two_readings", "Two t/h/p readings, one minute apart.", two, seal(two), "accept")
    add(
        "bundle_sixteen_readings",
        "Sixteen t/h/p readings, times from the gateway's ack (time source 2).",
        sixteen := inputs(seq=2000, prev=bytes(range(16)), time_source=2, readings=series(16)),
        seal(sixteen),
        "accept",
    )
    add(
        "bundle_thirty_two_readings",
        "The largest configured bundle: 32 t/h/p readings (must stay within 2,048 bytes).",
        big := inputs(seq=3000, prev=bytes(range(16)), time_source=2, readings=series(32)),
        seal(big),
        "accept",
    )
    failed = inputs(
        readings=(
            Reading(
                T0,
                (
                    Record("t", string_value="ENODEV"),
                    Record("h", "%RH", DecimalFraction(-2, 4512)),
                    Record("p", "Pa", 101325),
                ),
            ),
        )
    )
    add(
        "bundle_failed_sensor",
        "Temperature sensor failed: its record carries vs 'ENODEV' and no unit or v; the reading's first "
        "record still carries bt.",
        failed,
        seal(failed),
        "accept",
    )
    bat = inputs(
        status=Status(3912, -67, 86400, 2, 3),
        readings=(
            Reading(
                T0, (*thp(T0, 2150, 4512, 101325).records, Record("bat", "V", DecimalFraction(-3, 3912)))
            ),
        ),
    )
    add(
        "bundle_battery",
        "t/h/p plus a battery record (0.001 V); status reports 2 dropped readings and a deep-sleep wake.",
        bat,
        seal(bat),
        "accept",
    )
    add(
        "bundle_time_source_0",
        "No clock yet (time source 0): bt is seconds since boot on the monotonic clock; power-on reset.",
        ts0 := inputs(
            boot=0,
            seq=0,
            status=Status(0, 0, 12, 0, 0),
            time_source=0,
            readings=(thp(5, 2150, 4512, 101325), thp(65, 2151, 4510, 101324)),
        ),
        seal(ts0),
        "accept",
    )
    add(
        "bundle_negative_values",
        "Below zero: temperature -5.25 degC and -0.07 degC (negative mantissas), rssi -101 dBm, unknown "
        "reset cause, no battery measurement.",
        neg := inputs(
            status=Status(0, -101, 7, 0, 255),
            readings=(thp(T0, -525, 9900, 99000), thp(T0 + PERIOD, -7, 10000, 98999)),
        ),
        seal(neg),
        "accept",
    )
    add(
        "bundle_large_integers",
        "Integer widths: seq above 2**32 (9-byte head), boot 65536 and uptime above 2**16 (5-byte heads), "
        "pressure 4-byte.",
        large := inputs(
            boot=65536,
            seq=2**32 + 7,
            status=Status(65535, -1, 4000000, 300, 2),
            readings=series(2),
        ),
        seal(large),
        "accept",
    )
    # The uint64 boundaries: 2**63 is the first value a signed 64-bit store (SQLite INTEGER) cannot
    # hold, 2**64 - 1 the last the protocol allows; receivers must keep both exactly (issue 11 #1).
    for field, value, tag in ((f, v, t) for f in ("seq", "boot", "bt") for v, t in U64_EDGES):
        if field == "bt":
            edge = inputs(time_source=0, readings=(thp(value, 2150, 4512, 101325),))
            what = "bt (seconds since boot, time source 0)"
        else:
            edge = inputs(**{field: value})
            what = field
        add(
            f"bundle_{field}_{tag}",
            f"{what} = {value} ({'2**63, above signed 64-bit' if tag == '2_63' else '2**64 - 1, the largest'}"
            "): a 9-byte head; accepted and kept exactly, never clamped or wrapped.",
            edge,
            seal(edge),
            "accept",
        )
    add(
        "bundle_unknown_payload_key",
        "Payload key 8 (unknown to v1) is signed and ignored; the other fields read normally.",
        one,
        seal_map(bundle.payload_map(**one, extra={8: "future"})),
        "accept",
    )
    status_extra = bundle.payload_map(**one)
    status_extra[bundle.K_STATUS] = [*STATUS.to_cbor(), 42]
    add(
        "bundle_status_extra_element",
        "A sixth status element (a later version's field) is ignored.",
        one,
        seal_map(status_extra),
        "accept",
    )
    unknown_label = bundle.payload_map(**one)
    unknown_label[bundle.K_READINGS][1][42] = 1
    unknown_label[bundle.K_READINGS][2]["note"] = "x"
    add(
        "bundle_unknown_senml_label",
        "Unknown SenML labels (integer 42, text 'note') are ignored.",
        one,
        seal_map(unknown_label),
        "accept",
    )
    add(
        "bundle_size_2048",
        "Exactly 2,048 bytes (the limit), padded with an unknown payload key 8: accepted.",
        one,
        padded(one, 2048),
        "accept",
    )

    # -- history (context.stored) ------------------------------------------------------------------
    a = inputs(seq=100, readings=series(2))
    a_bytes = seal(a)
    b = inputs(seq=102, prev=bundle.link_of(a_bytes), readings=series(2, T0 + 2 * PERIOD))
    b_bytes = seal(b)
    c = inputs(seq=110, prev=bundle.link_of(b_bytes), readings=series(2, T0 + 10 * PERIOD))
    c_bytes = seal(c)
    add(
        "bundle_gap_filled",
        "Stored: seq 100-101 and 110-111, whose prev names a bundle not stored. This bundle (seq 102-103) "
        "is that missing link, resent late: accepted although below the stored high-water.",
        b,
        b_bytes,
        "accept",
        context={"stored": [a_bytes.hex(), c_bytes.hex()]},
    )
    rolled = inputs(seq=104, prev=bundle.link_of(c_bytes), readings=series(1, T0 + 20 * PERIOD))
    add(
        "bundle_replayed",
        "Stored: seq 100-101, 102-103, 110-111 (a chain). This bundle reuses sequence number 104 (skipped "
        "before) after 111: the counter went backwards.",
        rolled,
        seal(rolled),
        "replayed",
        context={"stored": [a_bytes.hex(), b_bytes.hex(), c_bytes.hex()]},
    )
    conflicting = inputs(seq=102, prev=bundle.link_of(a_bytes), readings=series(2, T0 + 3 * PERIOD))
    add(
        "bundle_conflict",
        "Stored: seq 100-101 and 102-103. This bundle holds sequence numbers 102-103 again with different "
        "readings (different bytes).",
        conflicting,
        seal(conflicting),
        "conflict",
        context={"stored": [a_bytes.hex(), b_bytes.hex()]},
    )

    # -- gateway registry and topic ----------------------------------------------------------------
    add(
        "bundle_unknown_device",
        "Valid bundle, but its kid is not in the gateway's registry.",
        one,
        one_bytes,
        "unknown_device",
        context={"registry": "unknown"},
    )
    add(
        "bundle_revoked",
        "Valid bundle from a registered but revoked device.",
        one,
        one_bytes,
        "revoked",
        context={"registry": "revoked"},
    )
    add(
        "bundle_wrong_topic",
        "Valid bundle published on another device's up topic.",
        one,
        one_bytes,
        "wrong_topic",
        context={"topic": f"pinseal/v1/{OTHER_KID.hex()}/up"},
    )

    # -- COSE envelope -----------------------------------------------------------------------------
    add(
        "bundle_bad_signature",
        "bundle_one_reading_thp with one signature bit flipped.",
        one,
        flip_signature_bit(one_bytes),
        "bad_signature",
    )
    payload = dcbor.encode(bundle.payload_map(**one))
    add(
        "bundle_signed_by_other_key",
        "Carries the device's kid but is signed by another Ed25519 key.",
        one,
        cose.sign1(payload, OTHER_KEY, bundle.protected_header(DEVICE_KID)),
        "bad_signature",
        context={"signed_by": {"seed": OTHER_SEED.hex(), "public_key": OTHER_PUB.hex()}},
    )
    add(
        "bundle_alg_es256",
        "alg -7 (ES256) in the protected header, otherwise a valid Ed25519 signature.",
        one,
        cose.sign1(payload, DEVICE_KEY, {1: -7, 4: DEVICE_KID}),
        "unsupported_algorithm",
    )
    ed448 = Ed448PrivateKey.from_private_bytes(ED448_SEED)
    ed448_pub = ed448.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    add(
        "bundle_alg_ed448",
        "alg EdDSA (-8) with the device's kid, but signed with Ed448 (a 114-byte signature). v1 EdDSA "
        "means Ed25519 only.",
        one,
        cose.sign1(payload, ed448, bundle.protected_header(DEVICE_KID)),
        "unsupported_algorithm",
        context={
            "signed_by": {"algorithm": "Ed448", "seed": ED448_SEED.hex(), "public_key": ed448_pub.hex()}
        },
    )
    add(
        "bundle_crit_header",
        "Protected header carries crit (2) = [4]: rejected, v1 understands no critical extensions.",
        one,
        cose.sign1(payload, DEVICE_KEY, {1: -8, 2: [4], 4: DEVICE_KID}),
        "unsupported_algorithm",
    )
    add(
        "bundle_kid_8_bytes",
        "kid of 8 bytes instead of 16.",
        one,
        cose.sign1(payload, DEVICE_KEY, {1: -8, 4: DEVICE_KID[:8]}),
        "invalid_structure",
    )
    add(
        "bundle_unprotected_not_empty",
        "kid repeated in the unprotected header, which must be the empty map.",
        one,
        cose.sign1(payload, DEVICE_KEY, bundle.protected_header(DEVICE_KID), {4: DEVICE_KID}),
        "invalid_structure",
    )
    p_bytes, _unprotected, _payload, signature = parts(one_bytes)
    add(
        "bundle_three_elements",
        "COSE_Sign1 array without the signature (3 elements).",
        one,
        dcbor.encode(cbor2.CBORTag(18, [p_bytes, {}, payload])),
        "invalid_structure",
    )
    add(
        "bundle_untagged",
        "The COSE_Sign1 array without tag 18.",
        one,
        dcbor.encode([p_bytes, {}, payload, signature]),
        "wrong_tag",
    )
    add(
        "bundle_tag_98",
        "The COSE_Sign1 array under tag 98 (COSE_Sign) instead of 18.",
        one,
        dcbor.encode(cbor2.CBORTag(98, [p_bytes, {}, payload, signature])),
        "wrong_tag",
    )
    add("bundle_truncated", "bundle_one_reading_thp without its last byte.", one, one_bytes[:-1], "malformed")
    add(
        "bundle_trailing_byte",
        "bundle_one_reading_thp followed by one extra byte (0x00).",
        one,
        one_bytes + b"\x00",
        "malformed",
    )
    add(
        "bundle_too_large",
        "2,049 bytes (one over the limit), padded with an unknown payload key 8; otherwise valid.",
        one,
        padded(one, 2049),
        "too_large",
    )

    # -- deterministic encoding (every one validly signed over the bytes shown) ---------------------
    fields = payload_of(one)
    enc = {k: dcbor.encode(val) for k, val in fields.items()}
    order = [2, 1, 3, 4, 5, 6, 7]
    add(
        "bundle_nondet_payload_key_order",
        "Payload map keys in the order 2, 1, 3, ... instead of sorted; signed over these bytes.",
        one,
        seal_bytes(raw_map([(k, enc[k]) for k in order])),
        "non_deterministic",
    )
    long_seq = b"\x1a" + struct.pack(">I", one["seq"])
    add(
        "bundle_nondet_payload_long_int",
        "seq 1000 encoded in a 5-byte head (1a 000003e8) instead of 3 bytes (19 03e8); signed over these "
        "bytes.",
        one,
        seal_bytes(raw_map([(k, long_seq if k == bundle.K_SEQ else enc[k]) for k in sorted(enc)])),
        "non_deterministic",
    )
    pack = fields[bundle.K_READINGS]
    indefinite = b"\x9f" + b"".join(dcbor.encode(r) for r in pack) + b"\xff"
    add(
        "bundle_nondet_indefinite_pack",
        "The SenML pack as an indefinite-length array; signed over these bytes.",
        one,
        seal_bytes(raw_map([(k, indefinite if k == bundle.K_READINGS else enc[k]) for k in sorted(enc)])),
        "non_deterministic",
    )
    float_pack = [dict(r) for r in pack]
    float_pack[0][senml.V] = 21.5
    float_pack_bytes = head(4, len(float_pack)) + b"".join(
        raw_map(
            [
                (
                    label,
                    (b"\xf9" + struct.pack(">e", value)) if isinstance(value, float) else dcbor.encode(value),
                )
                for label, value in sorted(record.items(), key=lambda kv: dcbor.encode(kv[0]))
            ]
        )
        for record in float_pack
    )
    add(
        "bundle_float_value",
        "Temperature as a half-precision float 21.5 (f9 4d60) instead of 4([-2, 2150]): v1 has no floats.",
        one,
        seal_bytes(
            raw_map([(k, float_pack_bytes if k == bundle.K_READINGS else enc[k]) for k in sorted(enc)])
        ),
        "non_deterministic",
    )
    protected_unsorted = raw_map([(4, dcbor.encode(DEVICE_KID)), (1, dcbor.encode(-8))])
    add(
        "bundle_nondet_protected_header",
        "Protected header map as {4: kid, 1: -8} (keys unsorted); signed over these bytes.",
        one,
        cose.sign1(payload, DEVICE_KEY, protected_unsorted),
        "non_deterministic",
    )
    add(
        "bundle_nondet_envelope_length",
        "bundle_one_reading_thp with the signature's length in a 3-byte head (59 0040) instead of 58 40.",
        one,
        envelope(dcbor.encode(p_bytes), b"\xa0", dcbor.encode(payload), b"\x59\x00\x40" + signature),
        "non_deterministic",
    )

    # -- payload -----------------------------------------------------------------------------------
    def with_fields(**changes: Any) -> bytes:
        data = bundle.payload_map(**one)
        for key, value in changes.items():
            label = int(key[1:])
            if value is None:
                del data[label]
            else:
                data[label] = value
        return seal_map(data)

    add("bundle_unsupported_version", "Payload version 2.", one, with_fields(k1=2), "unsupported_version")
    add(
        "bundle_missing_time_source",
        "Payload without key 6 (time source).",
        one,
        with_fields(k6=None),
        "invalid_payload",
    )
    add("bundle_time_source_3", "Time source 3 (undefined).", one, with_fields(k6=3), "invalid_payload")
    add("bundle_prev_15_bytes", "prev of 15 bytes.", one, with_fields(k4=bytes(15)), "invalid_payload")
    must = bundle.payload_map(**one)
    must[bundle.K_READINGS][0]["cal_"] = 1
    add(
        "bundle_must_understand_label",
        "A SenML record with the must-understand label 'cal_' (RFC 8428 §4.4).",
        one,
        seal_map(must),
        "invalid_payload",
    )
    no_bt = bundle.payload_map(**one)
    del no_bt[bundle.K_READINGS][0][senml.BT]
    add(
        "bundle_pack_without_bt",
        "SenML pack whose first record carries no bt.",
        one,
        seal_map(no_bt),
        "invalid_payload",
    )
    add("bundle_empty_pack", "Empty SenML pack (no readings).", one, with_fields(k7=[]), "invalid_payload")
    t_offset = bundle.payload_map(**one)
    t_offset[bundle.K_READINGS][1][senml.T] = 1
    add(
        "bundle_senml_time_offset",
        "A record carrying SenML t (time offset), which v1 readings never use.",
        one,
        seal_map(t_offset),
        "invalid_payload",
    )
    return v


def padded(fields: dict[str, Any], size: int) -> bytes:
    """A valid bundle of exactly `size` bytes: `fields` plus an unknown key 8 holding zero bytes."""
    for pad in range(size):
        data = seal_map(bundle.payload_map(**fields, extra={8: bytes(pad)}))
        if len(data) == size:
            return data
    raise ValueError(f"no padding gives {size} bytes")


def ack_vectors(bundles: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    v: dict[str, dict[str, Any]] = {}
    one_hash = bytes.fromhex(bundles["bundle_one_reading_thp"]["bundle_hash"])
    good = ack_input(bundle_hash=one_hash)
    good_bytes = ack.sign_ack(GATEWAY_KEY, **good)
    v["ack_valid"] = ack_vector(
        "The gateway's ack for bundle_one_reading_thp: seq 1000 stored, committed at T0 + 5 s.",
        good,
        good_bytes,
        "accept",
    )
    v["ack_bad_signature"] = ack_vector(
        "ack_valid with one signature bit flipped.", good, flip_signature_bit(good_bytes), "bad_signature"
    )
    other = ack_input(device=OTHER_KID, bundle_hash=one_hash)
    v["ack_wrong_device"] = ack_vector(
        "A valid ack for another device (device = another key id), received by this device.",
        other,
        ack.sign_ack(GATEWAY_KEY, **other),
        "wrong_topic",
    )
    v["ack_wrong_gateway_key"] = ack_vector(
        "An ack signed by a key other than the provisioned gateway key (with that key's kid).",
        good,
        ack.sign_ack(OTHER_KEY, **good),
        "unknown_device",
        context={"signed_by": {"seed": OTHER_SEED.hex(), "public_key": OTHER_PUB.hex()}},
    )
    payload = ack.payload_map(**good)
    payload[ack.K_VERSION] = 2
    v["ack_unsupported_version"] = ack_vector(
        "Ack payload version 2.",
        good,
        ack.sign_ack_payload(GATEWAY_KEY, dcbor.encode(payload)),
        "unsupported_version",
    )
    enc = {k: dcbor.encode(val) for k, val in ack.payload_map(**good).items()}
    enc[ack.K_TIME] = b"\x1b" + struct.pack(">Q", good["time"])
    v["ack_nondet_time"] = ack_vector(
        "Ack time in a 9-byte head instead of 5 bytes; signed over these bytes.",
        good,
        ack.sign_ack_payload(GATEWAY_KEY, raw_map(sorted(enc.items()))),
        "non_deterministic",
    )
    v["ack_truncated"] = ack_vector("ack_valid without its last byte.", good, good_bytes[:-1], "malformed")
    for value, tag in U64_EDGES:
        edge = ack_input(bundle_hash=one_hash, seq=value)
        v[f"ack_seq_{tag}"] = ack_vector(
            f"An ack whose seq is {value}: a device's contiguous seq can be any uint64 (9-byte head).",
            edge,
            ack.sign_ack(GATEWAY_KEY, **edge),
            "accept",
        )
    return v


def generate() -> dict[str, dict[str, Any]]:
    """Every vector by file stem."""
    bundles = bundle_vectors()
    return {**bundles, **ack_vectors(bundles)}


def write(outdir: Path, vectors: dict[str, dict[str, Any]] | None = None) -> list[Path]:
    """Write `<name>.json` files into `outdir`, replacing stale bundle_*/ack_* files; then the batch
    vectors and the MQTT frames (`pinseal_protocol.mqtt_frame_vectors`), so one command writes them all."""
    from pinseal_protocol import mqtt_frame_vectors

    vectors = generate() if vectors is None else vectors
    outdir.mkdir(parents=True, exist_ok=True)
    for stale in [*outdir.glob("bundle_*.json"), *outdir.glob("ack_*.json")]:
        if stale.stem not in vectors:
            stale.unlink()
    paths = [_write_json(outdir / f"{name}.json", vector) for name, vector in vectors.items()]
    return [*paths, *write_batches(outdir / "batch"), mqtt_frame_vectors.write(outdir)]


def write_batches(outdir: Path) -> list[Path]:
    """The batch vectors (`pinseal_protocol.batch_vectors`) into their own folder, stale ones removed."""
    from pinseal_protocol.batch_vectors import batch_vectors  # it builds on this module's keys

    vectors = batch_vectors()
    outdir.mkdir(parents=True, exist_ok=True)
    for stale in outdir.glob("batch_*.json"):
        if stale.stem not in vectors:
            stale.unlink()
    return [_write_json(outdir / f"{name}.json", vector) for name, vector in vectors.items()]


def _write_json(path: Path, vector: dict[str, Any]) -> Path:
    path.write_text(json.dumps(vector, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def main(argv: Sequence[str] = tuple(sys.argv[1:]), echo: Callable[[str], Any] = print) -> int:
    if len(argv) != 1:
        echo("usage: python -m pinseal_protocol.vectors OUTDIR")
        return 2
    paths = write(Path(argv[0]))
    echo(f"wrote {len(paths)} vectors to {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
