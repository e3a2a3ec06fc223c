"""The fast bundle path may only ever agree with the generic one: same fields when it answers, else None.

`fastbundle.parse` answering for bytes the generic path rejects (or reads differently) would let a
gateway accept what the protocol forbids, so every property here compares the two on the same bytes:
honest bundles of every shape the strategies reach, payloads mutated and re-signed (so the signature
holds and only the decoding can object), and whole messages mutated (structure without signature).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinseal_devkit import test_keys
from pinseal_devkit.vectors import writer
from pinseal_protocol import bundle, cose, dcbor, fastbundle, keys
from pinseal_protocol.bundle import Status
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.errors import NonDeterministic, RejectedMessage
from pinseal_protocol.senml import Reading, Record

KEY = keys.load_private_key(test_keys.DEVICE_SEED)
PUB = keys.load_public_key(test_keys.DEVICE_PUB)
KID = keys.key_id(PUB)

uint = st.integers(0, 2**64 - 1)
ints = st.one_of(st.integers(-(2**64), 2**64 - 1), st.integers(-30, 30), st.integers(-300, 300))
values = st.one_of(ints, st.builds(DecimalFraction, ints, ints))
names = st.text(min_size=1, max_size=30).filter(lambda s: not s.endswith("_"))
units = st.one_of(st.none(), st.sampled_from(["Cel", "%RH", "Pa", "V"]), st.text(max_size=30))
records = st.one_of(
    st.builds(Record, names, units, values),
    st.builds(lambda n, u, vs: Record(n, u, string_value=vs), names, units, st.text(max_size=30)),
)
readings = st.lists(
    st.builds(Reading, uint, st.lists(records, min_size=1, max_size=4).map(tuple)), min_size=1, max_size=6
)
statuses = st.builds(Status, uint, st.integers(-(2**64), 2**64 - 1), uint, uint, uint)


def generic(data: bytes) -> bundle.Bundle | None:
    """`verify_bundle` without the signature check: the fields, or None for a rejection."""
    try:
        message = cose.decode_sign1(data)
        kid = cose.pinseal_kid(message)
        if len(data) > bundle.MAX_SIZE:
            return None
        return bundle._parse_payload(dcbor.decode(message.payload), kid, bytes(data))
    except RejectedMessage:
        return None


def assert_agree(data: bytes) -> bundle.Bundle | None:
    fast = fastbundle.parse(data)
    if fast is None:
        return None
    slow = generic(data)
    assert slow is not None, f"fast path accepted what the generic path rejects: {data.hex()}"
    for name in ("kid", "boot", "seq", "n_readings", "last_seq", "prev", "status", "time_source"):
        assert getattr(fast, name) == getattr(slow, name), name
    assert (fast.bundle_hash, fast.raw, fast.link) == (slow.bundle_hash, slow.raw, slow.link)
    assert fast.readings == slow.readings
    rows = [
        (
            slow.bundle_hash,
            slow.kid,
            slow.seq + i,
            r.time,
            rec.name,
            rec.unit,
            None if rec.value is None else str(rec.value),
            rec.string_value,
        )
        for i, r in enumerate(slow.readings)
        for rec in r.records
    ]
    assert list(fast.rows) == rows
    times = [r.time for r in slow.readings]
    assert (fast.min_time, fast.max_time) == (min(times), max(times))
    message = cose.decode_sign1(data)
    assert fast.signed == cose.sig_structure(message.protected_bytes, message.payload)
    assert fast.signature == message.signature
    return fast


def seal(**fields: Any) -> bytes:
    return bundle.seal(KEY, **fields)


@settings(max_examples=300, deadline=None)
@given(
    boot=uint,
    seq=uint,
    prev=st.binary(min_size=16, max_size=16),
    status=statuses,
    time_source=st.sampled_from([0, 1, 2]),
    readings=readings,
)
def test_honest_bundles_take_the_fast_path_with_the_same_fields(
    boot: int, seq: int, prev: bytes, status: Status, time_source: int, readings: list[Reading]
) -> None:
    data = seal(boot=boot, seq=seq, prev=prev, status=status, time_source=time_source, readings=readings)
    fast = assert_agree(data)
    if generic(data) is not None and len(data) <= bundle.MAX_SIZE:
        # Everything a device's layout can hold goes the fast way (only the 64-bit seq overflow is
        # left to the generic path, which rejects it).
        assert fast is not None
        fast.signature  # noqa: B018 - present
        PUB.verify(fast.signature, fast.signed)


def honest_payload(data: st.DataObject) -> bytes:
    fields = bundle.payload_map(
        boot=data.draw(uint),
        seq=data.draw(st.integers(0, 2**32)),
        prev=data.draw(st.binary(min_size=16, max_size=16)),
        status=data.draw(statuses),
        time_source=data.draw(st.sampled_from([0, 1, 2])),
        readings=data.draw(readings),
    )
    return dcbor.encode(fields)


def mutate(raw: bytes, data: st.DataObject) -> bytes:
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = data.draw(st.integers(0, max(0, len(out) - 1)))
        if kind == "flip" and out:
            out[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and out:
            out[pos] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            out[pos:pos] = data.draw(st.binary(min_size=1, max_size=3))
        elif kind == "delete" and out:
            del out[pos : pos + data.draw(st.integers(1, 3))]
        elif kind == "truncate":
            del out[pos:]
    return bytes(out)


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_mutated_payloads_resigned_never_fast_unless_generic_agrees(data: st.DataObject) -> None:
    payload = mutate(honest_payload(data), data)
    assert_agree(bundle.seal_payload(KEY, KID, payload))


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_mutated_messages_never_fast_unless_generic_agrees(data: st.DataObject) -> None:
    message = bundle.seal_payload(KEY, KID, honest_payload(data))
    assert_agree(mutate(message, data))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_non_shortest_heads_and_unusual_layouts_go_to_the_generic_path(data: st.DataObject) -> None:
    """Valid-looking but non-deterministic or non-device layouts: never fast (generic rejects or reads)."""
    payload = honest_payload(data)
    value = dcbor.decode(payload)
    variant = data.draw(st.sampled_from(["extra_key", "status6", "string_key", "bt_text"]))
    if variant == "extra_key":
        value[8] = 0
    elif variant == "status6":
        value[5] = [*value[5], 7]
    elif variant == "string_key":
        value[7][0]["x"] = 1
    else:
        value[7][0][-3] = "now"
    message = bundle.seal_payload(KEY, KID, dcbor.encode(value))
    assert fastbundle.parse(message) is None
    assert_agree(message)


def test_every_project_vector_agrees() -> None:
    """The project's bundle vectors, accepted and rejected, through both paths; honest ones go fast."""
    fast = 0
    all_vectors = {n: v for n, v in writer.generate().items() if v["kind"] == "bundle"}
    for vector in all_vectors.values():
        data = bytes.fromhex(vector["bundle"])
        if assert_agree(data) is not None:
            fast += 1
            if vector["expect"] == "accept":
                PUB.verify(fastbundle.parse(data).signature, fastbundle.parse(data).signed)  # type: ignore[union-attr]
    assert len(all_vectors) > 10 and fast > 0


@pytest.mark.parametrize(
    ("canonical", "longer"),
    [
        (b"\x82\x21\x18\xc8", b"\x82\x21\x19\x00\xc8"),  # mantissa 200 in two bytes
        (b"\x22\x19\x03\xe8", b"\x22\x1a\x00\x00\x03\xe8"),  # bt 1000 in four bytes
        (b"\x82\x21\x18\xc8", b"\x82\x38\x01\x18\xc8"),  # exponent -2 in a length byte
    ],
)
def test_inlined_heads_still_insist_on_the_shortest_form(canonical: bytes, longer: bytes) -> None:
    readings = [Reading(1000, (Record("t", "Cel", DecimalFraction(-2, 200)),))]
    fields = bundle.payload_map(
        boot=1, seq=0, prev=bytes(16), status=Status(), time_source=0, readings=readings
    )
    payload = dcbor.encode(fields)
    assert payload.count(canonical) == 1
    message = bundle.seal_payload(KEY, KID, payload.replace(canonical, longer))
    assert fastbundle.parse(message) is None
    with pytest.raises(NonDeterministic):
        bundle.verify_bundle(message, PUB)
    assert fastbundle.parse(bundle.seal_payload(KEY, KID, payload)) is not None
