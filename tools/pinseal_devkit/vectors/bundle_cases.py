"""The bundle vectors as a table of cases, one group per kind of receiver check (docs/protocol.md §8).

Every group starts from the same reference bundle (`ONE`: one t/h/p reading, the first of its chain) and
changes one thing, so each rejected case carries exactly one defect. Groups are functions only so that
nothing is signed at import time; each returns its rows in file order.
"""

import struct
from collections.abc import Callable
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pinseal_devkit.test_keys import (
    DEVICE_KEY,
    DEVICE_KID,
    ED448_SEED,
    OTHER_KEY,
    OTHER_KID,
    OTHER_PUB,
    OTHER_SEED,
)
from pinseal_devkit.vectors.craft import (
    envelope,
    flip_signature_bit,
    padded,
    parts,
    raw_map,
    seal,
    seal_bytes,
    seal_map,
)
from pinseal_devkit.vectors.inputs import PERIOD, STATUS, T0, U64_EDGES, inputs, series, thp
from pinseal_devkit.vectors.records import Case
from pinseal_protocol import bundle, cose, dcbor, senml
from pinseal_protocol.bundle import Status
from pinseal_protocol.dcbor import DecimalFraction, head
from pinseal_protocol.senml import Reading, Record

ONE = inputs()
"""The reference bundle's fields: the first bundle a device seals."""


def one_payload() -> bytes:
    """The reference bundle's payload bytes (what the envelope cases sign in other ways)."""
    return dcbor.encode(bundle.payload_map(**ONE))


def accepted() -> list[Case]:
    """Bundles a correct device makes, across sizes, sensors, time sources and integer widths."""
    one_bytes = seal(ONE)
    chained = inputs(seq=1001, prev=bundle.link_of(one_bytes), readings=series(1, T0 + PERIOD))
    chained_bytes = seal(chained)
    two = inputs(seq=1002, prev=bundle.link_of(chained_bytes), readings=series(2, T0 + 2 * PERIOD))
    sixteen = inputs(seq=2000, prev=bytes(range(16)), time_source=2, readings=series(16))
    big = inputs(seq=3000, prev=bytes(range(16)), time_source=2, readings=series(32))
    failed_sensor = (
        Record("t", string_value="ENODEV"),
        Record("h", "%RH", DecimalFraction(-2, 4512)),
        Record("p", "Pa", 101325),
    )
    failed = inputs(readings=(Reading(T0, failed_sensor),))
    battery = Record("bat", "V", DecimalFraction(-3, 3912))
    bat = inputs(
        status=Status(3912, -67, 86400, 2, 3),
        readings=(Reading(T0, (*thp(T0, 2150, 4512, 101325).records, battery)),),
    )
    ts0 = inputs(
        boot=0,
        seq=0,
        status=Status(0, 0, 12, 0, 0),
        time_source=0,
        readings=(thp(5, 2150, 4512, 101325), thp(65, 2151, 4510, 101324)),
    )
    neg = inputs(
        status=Status(0, -101, 7, 0, 255),
        readings=(thp(T0, -525, 9900, 99000), thp(T0 + PERIOD, -7, 10000, 98999)),
    )
    large = inputs(boot=65536, seq=2**32 + 7, status=Status(65535, -1, 4000000, 300, 2), readings=series(2))
    return [
        Case(
            "bundle_one_reading_thp",
            "First bundle a device seals (prev = 16 zero bytes): one reading of temperature, humidity and "
            "pressure, NTP time (time source 1). The size budget's reference case (<= 200 bytes).",
            ONE,
            one_bytes,
            "accept",
        ),
        Case(
            "bundle_chained",
            "The bundle after bundle_one_reading_thp: prev = SHA-256(that bundle)[:16], seq + 1.",
            chained,
            chained_bytes,
            "accept",
        ),
        Case("bundle_two_readings", "Two t/h/p readings, one minute apart.", two, seal(two), "accept"),
        Case(
            "bundle_sixteen_readings",
            "Sixteen t/h/p readings, times from the gateway's ack (time source 2).",
            sixteen,
            seal(sixteen),
            "accept",
        ),
        Case(
            "bundle_thirty_two_readings",
            "The largest configured bundle: 32 t/h/p readings (must stay within 2,048 bytes).",
            big,
            seal(big),
            "accept",
        ),
        Case(
            "bundle_failed_sensor",
            "Temperature sensor failed: its record carries vs 'ENODEV' and no unit or v; the reading's "
            "first record still carries bt.",
            failed,
            seal(failed),
            "accept",
        ),
        Case(
            "bundle_battery",
            "t/h/p plus a battery record (0.001 V); status reports 2 dropped readings and a deep-sleep wake.",
            bat,
            seal(bat),
            "accept",
        ),
        Case(
            "bundle_time_source_0",
            "No clock yet (time source 0): bt is seconds since boot on the monotonic clock; power-on reset.",
            ts0,
            seal(ts0),
            "accept",
        ),
        Case(
            "bundle_negative_values",
            "Below zero: temperature -5.25 degC and -0.07 degC (negative mantissas), rssi -101 dBm, unknown "
            "reset cause, no battery measurement.",
            neg,
            seal(neg),
            "accept",
        ),
        Case(
            "bundle_large_integers",
            "Integer widths: seq above 2**32 (9-byte head), boot 65536 and uptime above 2**16 (5-byte "
            "heads), pressure 4-byte.",
            large,
            seal(large),
            "accept",
        ),
        *uint64_edges(),
        *forward_compatible(),
    ]


def uint64_edges() -> list[Case]:
    """2**63 is the first value a signed 64-bit store (SQLite INTEGER) cannot hold, 2**64 - 1 the last the
    protocol allows; receivers must keep both exactly (issue 11 #1)."""
    rows = []
    for field in ("seq", "boot", "bt"):
        for value, tag in U64_EDGES:
            if field == "bt":
                edge = inputs(time_source=0, readings=(thp(value, 2150, 4512, 101325),))
                what = "bt (seconds since boot, time source 0)"
            else:
                edge = inputs(**{field: value})
                what = field
            size = "2**63, above signed 64-bit" if tag == "2_63" else "2**64 - 1, the largest"
            rows.append(
                Case(
                    f"bundle_{field}_{tag}",
                    f"{what} = {value} ({size}): a 9-byte head; accepted and kept exactly, never clamped or "
                    "wrapped.",
                    edge,
                    seal(edge),
                    "accept",
                )
            )
    return rows


def forward_compatible() -> list[Case]:
    """What a later version may add and v1 must ignore, and the largest bundle allowed."""
    status_extra = bundle.payload_map(**ONE)
    status_extra[bundle.K_STATUS] = [*STATUS.to_cbor(), 42]
    unknown_label = bundle.payload_map(**ONE)
    unknown_label[bundle.K_READINGS][1][42] = 1
    unknown_label[bundle.K_READINGS][2]["note"] = "x"
    return [
        Case(
            "bundle_unknown_payload_key",
            "Payload key 8 (unknown to v1) is signed and ignored; the other fields read normally.",
            ONE,
            seal_map(bundle.payload_map(**ONE, extra={8: "future"})),
            "accept",
        ),
        Case(
            "bundle_status_extra_element",
            "A sixth status element (a later version's field) is ignored.",
            ONE,
            seal_map(status_extra),
            "accept",
        ),
        Case(
            "bundle_unknown_senml_label",
            "Unknown SenML labels (integer 42, text 'note') are ignored.",
            ONE,
            seal_map(unknown_label),
            "accept",
        ),
        Case(
            "bundle_size_2048",
            "Exactly 2,048 bytes (the limit), padded with an unknown payload key 8: accepted.",
            ONE,
            padded(ONE, 2048),
            "accept",
        ),
    ]


def history() -> list[Case]:
    """Cases judged against bundles already stored (context.stored): gaps, replays, conflicts."""
    a = inputs(seq=100, readings=series(2))
    a_bytes = seal(a)
    b = inputs(seq=102, prev=bundle.link_of(a_bytes), readings=series(2, T0 + 2 * PERIOD))
    b_bytes = seal(b)
    c = inputs(seq=110, prev=bundle.link_of(b_bytes), readings=series(2, T0 + 10 * PERIOD))
    c_bytes = seal(c)
    rolled = inputs(seq=104, prev=bundle.link_of(c_bytes), readings=series(1, T0 + 20 * PERIOD))
    conflicting = inputs(seq=102, prev=bundle.link_of(a_bytes), readings=series(2, T0 + 3 * PERIOD))
    return [
        Case(
            "bundle_gap_filled",
            "Stored: seq 100-101 and 110-111, whose prev names a bundle not stored. This bundle (seq "
            "102-103) is that missing link, resent late: accepted although below the stored high-water.",
            b,
            b_bytes,
            "accept",
            {"stored": [a_bytes.hex(), c_bytes.hex()]},
        ),
        Case(
            "bundle_replayed",
            "Stored: seq 100-101, 102-103, 110-111 (a chain). This bundle reuses sequence number 104 "
            "(skipped before) after 111: the counter went backwards.",
            rolled,
            seal(rolled),
            "replayed",
            {"stored": [a_bytes.hex(), b_bytes.hex(), c_bytes.hex()]},
        ),
        Case(
            "bundle_conflict",
            "Stored: seq 100-101 and 102-103. This bundle holds sequence numbers 102-103 again with "
            "different readings (different bytes).",
            conflicting,
            seal(conflicting),
            "conflict",
            {"stored": [a_bytes.hex(), b_bytes.hex()]},
        ),
    ]


def registry_and_topic() -> list[Case]:
    """A valid bundle the gateway refuses for who sent it or where it arrived."""
    one_bytes = seal(ONE)
    return [
        Case(
            "bundle_unknown_device",
            "Valid bundle, but its kid is not in the gateway's registry.",
            ONE,
            one_bytes,
            "unknown_device",
            {"registry": "unknown"},
        ),
        Case(
            "bundle_revoked",
            "Valid bundle from a registered but revoked device.",
            ONE,
            one_bytes,
            "revoked",
            {"registry": "revoked"},
        ),
        Case(
            "bundle_wrong_topic",
            "Valid bundle published on another device's up topic.",
            ONE,
            one_bytes,
            "wrong_topic",
            {"topic": f"pinseal/v1/{OTHER_KID.hex()}/up"},
        ),
    ]


def cose_envelope() -> list[Case]:
    """Defects of the COSE_Sign1 envelope: signature, algorithm, headers, tag, framing, size."""
    one_bytes = seal(ONE)
    payload = one_payload()
    ed448 = Ed448PrivateKey.from_private_bytes(ED448_SEED)
    ed448_pub = ed448.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    p_bytes, _unprotected, _payload, signature = parts(one_bytes)
    return [
        Case(
            "bundle_bad_signature",
            "bundle_one_reading_thp with one signature bit flipped.",
            ONE,
            flip_signature_bit(one_bytes),
            "bad_signature",
        ),
        Case(
            "bundle_signed_by_other_key",
            "Carries the device's kid but is signed by another Ed25519 key.",
            ONE,
            cose.sign1(payload, OTHER_KEY, bundle.protected_header(DEVICE_KID)),
            "bad_signature",
            {"signed_by": {"seed": OTHER_SEED.hex(), "public_key": OTHER_PUB.hex()}},
        ),
        Case(
            "bundle_alg_es256",
            "alg -7 (ES256) in the protected header, otherwise a valid Ed25519 signature.",
            ONE,
            cose.sign1(payload, DEVICE_KEY, {1: -7, 4: DEVICE_KID}),
            "unsupported_algorithm",
        ),
        Case(
            "bundle_alg_ed448",
            "alg EdDSA (-8) with the device's kid, but signed with Ed448 (a 114-byte signature). v1 EdDSA "
            "means Ed25519 only.",
            ONE,
            cose.sign1(payload, ed448, bundle.protected_header(DEVICE_KID)),
            "unsupported_algorithm",
            {"signed_by": {"algorithm": "Ed448", "seed": ED448_SEED.hex(), "public_key": ed448_pub.hex()}},
        ),
        Case(
            "bundle_crit_header",
            "Protected header carries crit (2) = [4]: rejected, v1 understands no critical extensions.",
            ONE,
            cose.sign1(payload, DEVICE_KEY, {1: -8, 2: [4], 4: DEVICE_KID}),
            "unsupported_algorithm",
        ),
        Case(
            "bundle_kid_8_bytes",
            "kid of 8 bytes instead of 16.",
            ONE,
            cose.sign1(payload, DEVICE_KEY, {1: -8, 4: DEVICE_KID[:8]}),
            "invalid_structure",
        ),
        Case(
            "bundle_unprotected_not_empty",
            "kid repeated in the unprotected header, which must be the empty map.",
            ONE,
            cose.sign1(payload, DEVICE_KEY, bundle.protected_header(DEVICE_KID), {4: DEVICE_KID}),
            "invalid_structure",
        ),
        Case(
            "bundle_three_elements",
            "COSE_Sign1 array without the signature (3 elements).",
            ONE,
            dcbor.encode(cbor2.CBORTag(18, [p_bytes, {}, payload])),
            "invalid_structure",
        ),
        Case(
            "bundle_untagged",
            "The COSE_Sign1 array without tag 18.",
            ONE,
            dcbor.encode([p_bytes, {}, payload, signature]),
            "wrong_tag",
        ),
        Case(
            "bundle_tag_98",
            "The COSE_Sign1 array under tag 98 (COSE_Sign) instead of 18.",
            ONE,
            dcbor.encode(cbor2.CBORTag(98, [p_bytes, {}, payload, signature])),
            "wrong_tag",
        ),
        Case(
            "bundle_truncated",
            "bundle_one_reading_thp without its last byte.",
            ONE,
            one_bytes[:-1],
            "malformed",
        ),
        Case(
            "bundle_trailing_byte",
            "bundle_one_reading_thp followed by one extra byte (0x00).",
            ONE,
            one_bytes + b"\x00",
            "malformed",
        ),
        Case(
            "bundle_too_large",
            "2,049 bytes (one over the limit), padded with an unknown payload key 8; otherwise valid.",
            ONE,
            padded(ONE, 2049),
            "too_large",
        ),
    ]


def _half_float_pack(pack: list[dict[Any, Any]]) -> bytes:
    """The SenML pack with the first record's value as a half-precision float (which v1 never sends)."""
    float_pack = [dict(r) for r in pack]
    float_pack[0][senml.V] = 21.5
    return head(4, len(float_pack)) + b"".join(
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


def non_deterministic() -> list[Case]:
    """Encodings CBOR allows but deterministic CBOR does not; every one validly signed over the bytes."""
    one_bytes = seal(ONE)
    payload = one_payload()
    p_bytes, _unprotected, _payload, signature = parts(one_bytes)
    fields = bundle.payload_map(**ONE)
    enc = {k: dcbor.encode(val) for k, val in fields.items()}

    def payload_with(key: int, encoded: bytes) -> bytes:
        return seal_bytes(raw_map([(k, encoded if k == key else enc[k]) for k in sorted(enc)]))

    pack = fields[bundle.K_READINGS]
    indefinite = b"\x9f" + b"".join(dcbor.encode(r) for r in pack) + b"\xff"
    protected_unsorted = raw_map([(4, dcbor.encode(DEVICE_KID)), (1, dcbor.encode(-8))])
    return [
        Case(
            "bundle_nondet_payload_key_order",
            "Payload map keys in the order 2, 1, 3, ... instead of sorted; signed over these bytes.",
            ONE,
            seal_bytes(raw_map([(k, enc[k]) for k in [2, 1, 3, 4, 5, 6, 7]])),
            "non_deterministic",
        ),
        Case(
            "bundle_nondet_payload_long_int",
            "seq 1000 encoded in a 5-byte head (1a 000003e8) instead of 3 bytes (19 03e8); signed over "
            "these bytes.",
            ONE,
            payload_with(bundle.K_SEQ, b"\x1a" + struct.pack(">I", ONE["seq"])),
            "non_deterministic",
        ),
        Case(
            "bundle_nondet_indefinite_pack",
            "The SenML pack as an indefinite-length array; signed over these bytes.",
            ONE,
            payload_with(bundle.K_READINGS, indefinite),
            "non_deterministic",
        ),
        Case(
            "bundle_float_value",
            "Temperature as a half-precision float 21.5 (f9 4d60) instead of 4([-2, 2150]): v1 has no "
            "floats.",
            ONE,
            payload_with(bundle.K_READINGS, _half_float_pack(pack)),
            "non_deterministic",
        ),
        Case(
            "bundle_nondet_protected_header",
            "Protected header map as {4: kid, 1: -8} (keys unsorted); signed over these bytes.",
            ONE,
            cose.sign1(payload, DEVICE_KEY, protected_unsorted),
            "non_deterministic",
        ),
        Case(
            "bundle_nondet_envelope_length",
            "bundle_one_reading_thp with the signature's length in a 3-byte head (59 0040) instead of 58 40.",
            ONE,
            envelope(dcbor.encode(p_bytes), b"\xa0", dcbor.encode(payload), b"\x59\x00\x40" + signature),
            "non_deterministic",
        ),
    ]


def _with_fields(**changes: Any) -> bytes:
    """The reference payload with fields replaced (`k6=3`) or removed (`k6=None`), signed."""
    data = bundle.payload_map(**ONE)
    for key, value in changes.items():
        label = int(key[1:])
        if value is None:
            del data[label]
        else:
            data[label] = value
    return seal_map(data)


def _with_pack(change: Callable[[list[dict[Any, Any]]], None]) -> bytes:
    """The reference payload with its SenML pack changed in place by `change`, signed."""
    data = bundle.payload_map(**ONE)
    change(data[bundle.K_READINGS])
    return seal_map(data)


def _set(record: int, label: Any, value: Any) -> Callable[[list[dict[Any, Any]]], None]:
    def change(pack: list[dict[Any, Any]]) -> None:
        pack[record][label] = value

    return change


def _drop_bt(pack: list[dict[Any, Any]]) -> None:
    del pack[0][senml.BT]


def payload() -> list[Case]:
    """Defects inside a validly signed payload: version, fields, and the SenML pack."""
    return [
        Case(
            "bundle_unsupported_version", "Payload version 2.", ONE, _with_fields(k1=2), "unsupported_version"
        ),
        Case(
            "bundle_missing_time_source",
            "Payload without key 6 (time source).",
            ONE,
            _with_fields(k6=None),
            "invalid_payload",
        ),
        Case(
            "bundle_time_source_3", "Time source 3 (undefined).", ONE, _with_fields(k6=3), "invalid_payload"
        ),
        Case("bundle_prev_15_bytes", "prev of 15 bytes.", ONE, _with_fields(k4=bytes(15)), "invalid_payload"),
        Case(
            "bundle_must_understand_label",
            "A SenML record with the must-understand label 'cal_' (RFC 8428 §4.4).",
            ONE,
            _with_pack(_set(0, "cal_", 1)),
            "invalid_payload",
        ),
        Case(
            "bundle_pack_without_bt",
            "SenML pack whose first record carries no bt.",
            ONE,
            _with_pack(_drop_bt),
            "invalid_payload",
        ),
        Case(
            "bundle_empty_pack",
            "Empty SenML pack (no readings).",
            ONE,
            _with_fields(k7=[]),
            "invalid_payload",
        ),
        Case(
            "bundle_senml_time_offset",
            "A record carrying SenML t (time offset), which v1 readings never use.",
            ONE,
            _with_pack(_set(1, senml.T, 1)),
            "invalid_payload",
        ),
    ]


TABLE: tuple[Callable[[], list[Case]], ...] = (
    accepted,
    history,
    registry_and_topic,
    cose_envelope,
    non_deterministic,
    payload,
)
"""Every group of bundle cases, in the order the vectors were first written."""


def bundle_cases() -> list[Case]:
    """Every bundle case, each group's rows in turn."""
    return [case for group in TABLE for case in group()]
