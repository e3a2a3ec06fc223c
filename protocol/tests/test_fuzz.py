"""Hostile input: receivers only ever raise RejectedMessage, and never accept altered bytes."""

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vector_files import load_vectors

from pinseal_devkit import test_keys
from pinseal_protocol import ack, bundle, cose, keys, rejection
from pinseal_protocol.errors import RejectedMessage

VECTORS = load_vectors()
DEVICE = keys.load_public_key(test_keys.DEVICE_PUB)
GATEWAY = keys.load_public_key(test_keys.GATEWAY_PUB)
VALID_BUNDLES = [
    bytes.fromhex(v["bundle"]) for v in VECTORS.values() if v["kind"] == "bundle" and v["expect"] == "accept"
]
VALID_ACKS = [
    bytes.fromhex(v["ack"]) for v in VECTORS.values() if v["kind"] == "ack" and v["expect"] == "accept"
]
VALID_REJECTIONS = [
    bytes.fromhex(v["rejection"])
    for v in VECTORS.values()
    if v["kind"] == "rejection" and v["expect"] == "accept"
]
SETTINGS = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _receive_bundle(data: bytes) -> bundle.Bundle | None:
    try:
        return bundle.verify_bundle(data, DEVICE)
    except RejectedMessage:
        return None


def _receive_ack(data: bytes) -> ack.Ack | None:
    try:
        return ack.verify_ack(data, GATEWAY, test_keys.DEVICE_KID)
    except RejectedMessage:
        return None


def _receive_reply(data: bytes) -> ack.Ack | rejection.RejectionNotice | None:
    try:
        return rejection.verify_reply(data, GATEWAY, test_keys.DEVICE_KID)
    except RejectedMessage:
        return None


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    assert _receive_bundle(data) is None
    assert _receive_ack(data) is None
    assert _receive_reply(data) is None
    with contextlib.suppress(RejectedMessage):
        cose.decode_sign1(data)


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_behind_a_sign1_prefix(tail: bytes) -> None:
    """Start like a real bundle so the fuzzer gets past the tag and into the structure checks."""
    data = VALID_BUNDLES[0][:4] + tail
    result = _receive_bundle(data)
    assert result is None or data == VALID_BUNDLES[0]


def _mutations() -> st.SearchStrategy[tuple[bytes, bytes]]:
    def mutate(draw: st.DrawFn) -> tuple[bytes, bytes]:
        original = draw(st.sampled_from(VALID_BUNDLES + VALID_ACKS + VALID_REJECTIONS))
        data = bytearray(original)
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "replace"]))
            if not data:
                break
            at = draw(st.integers(0, len(data) - 1))
            if kind == "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            elif kind == "truncate":
                del data[at:]
            elif kind == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=4))
            elif kind == "delete":
                del data[at : at + draw(st.integers(1, 4))]
            else:
                data[at] = draw(st.integers(0, 255))
        return original, bytes(data)

    return st.composite(mutate)()


@SETTINGS
@given(_mutations())
def test_mutated_messages_never_accepted(pair: tuple[bytes, bytes]) -> None:
    original, mutated = pair
    got_bundle = _receive_bundle(mutated)
    got_ack = _receive_ack(mutated)
    got_reply = _receive_reply(mutated)
    if mutated != original:
        assert got_bundle is None
        assert got_ack is None
        assert got_reply is None
    else:
        assert got_bundle is not None or got_ack is not None or got_reply is not None


@SETTINGS
@given(st.sampled_from(VALID_REJECTIONS))
def test_a_rejection_is_never_read_as_an_ack(data: bytes) -> None:
    """A device that predates rejections must not drop a bundle on one (docs/protocol.md §5.1)."""
    assert _receive_ack(data) is None
    assert isinstance(_receive_reply(data), rejection.RejectionNotice)
