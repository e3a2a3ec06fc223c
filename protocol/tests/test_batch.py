"""Signed batch headers, the uplink message and inclusion proof documents (batch.py)."""

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinseal_protocol import batch, bundle, dcbor, keys, merkle
from pinseal_protocol.batch import LeafProof, UplinkBatch
from pinseal_protocol.bundle import Status
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.errors import (
    BadProof,
    BadSignature,
    ChainBroken,
    InvalidPayload,
    InvalidStructure,
    Malformed,
    NonDeterministic,
    RejectedMessage,
    Revoked,
    TooLarge,
    UnknownDevice,
    UnsupportedVersion,
)
from pinseal_protocol.senml import Reading, Record

GATEWAY = keys.load_private_key(bytes(range(32)))
GATEWAY_PUB = GATEWAY.public_key()
GATEWAY_KID = keys.key_id(GATEWAY_PUB)
OTHER = keys.load_private_key(bytes(range(1, 33)))
DEVICE = keys.load_private_key(bytes(range(2, 34)))


def bundles(n: int) -> list[bytes]:
    """n chained one-reading bundles from DEVICE."""
    out, prev = [], bundle.ZERO_PREV
    for seq in range(n):
        reading = Reading(1_700_000_000 + seq, (Record("t", "Cel", DecimalFraction(-2, 2100 + seq)),))
        raw = bundle.seal(
            DEVICE, boot=1, seq=seq, prev=prev, status=Status(), time_source=1, readings=[reading]
        )
        out.append(raw)
        prev = bundle.link_of(raw)
    return out


BUNDLES = bundles(5)
HASHES = [hashlib.sha256(b).digest() for b in BUNDLES]


def header(
    count: int = 5, *, batch_no: int = 0, prev: bytes = batch.ZERO_HASH, key=GATEWAY, root=None
) -> bytes:
    return batch.sign_header(
        key,
        batch_no=batch_no,
        prev_hash=prev,
        root=root if root is not None else batch.batch_root(HASHES[:count]),
        count=count,
        first_received=1_700_000_000,
        last_received=1_700_000_060,
    )


def crafted(payload: dict, key=GATEWAY) -> bytes:
    return batch.sign_header_payload(key, keys.key_id(key.public_key()), dcbor.encode(payload))


def good_payload(changes: dict | None = None) -> dict:
    payload = batch.header_payload(
        gateway_kid=GATEWAY_KID,
        batch_no=3,
        prev_hash=b"\x11" * 32,
        root=b"\x22" * 32,
        count=2,
        first_received=10,
        last_received=20,
    )
    payload.update(changes or {})
    return payload


# --- leaves ------------------------------------------------------------------------------------------


def test_leaves_are_bundle_hashes() -> None:
    assert batch.batch_root(HASHES) == merkle.root(HASHES)
    assert batch.bundle_leaf_hash(HASHES[0]) == hashlib.sha256(b"\x00" + HASHES[0]).digest()
    assert batch.bundle_hash(BUNDLES[0]) == bundle.bundle_hash(BUNDLES[0])


# --- header ------------------------------------------------------------------------------------------


def test_header_round_trip() -> None:
    raw = header(batch_no=7, prev=b"\x01" * 32)
    parsed = batch.verify_header(raw, GATEWAY_PUB)
    assert parsed.gateway_kid == GATEWAY_KID
    assert (parsed.batch_no, parsed.prev_hash, parsed.count) == (7, b"\x01" * 32, 5)
    assert parsed.root == batch.batch_root(HASHES)
    assert (parsed.first_received, parsed.last_received) == (1_700_000_000, 1_700_000_060)
    assert parsed.raw == raw and parsed.batch_hash == hashlib.sha256(raw).digest() == batch.batch_hash(raw)
    assert raw == header(batch_no=7, prev=b"\x01" * 32)  # deterministic
    value = dcbor.decode(raw)
    assert value.tag == 18 and dcbor.decode(value.value[0]) == {1: -8, 4: GATEWAY_KID}
    assert value.value[1] == {}


def test_header_with_a_registry_resolver() -> None:
    def resolve(kid: bytes):
        if kid == GATEWAY_KID:
            return GATEWAY_PUB
        raise Revoked(kid.hex())

    assert batch.verify_header(header(), resolve).count == 5
    with pytest.raises(Revoked):
        batch.verify_header(header(key=OTHER), resolve)


def test_header_signed_by_another_gateway() -> None:
    with pytest.raises(UnknownDevice):
        batch.verify_header(header(key=OTHER), GATEWAY_PUB)


def test_forged_header_signature() -> None:
    raw = bytearray(header())
    raw[-1] ^= 1
    with pytest.raises(BadSignature):
        batch.verify_header(bytes(raw), GATEWAY_PUB)


def test_header_payload_swapped_under_the_signature() -> None:
    message = dcbor.decode(header())
    message.value[2] = dcbor.encode(good_payload())
    with pytest.raises(BadSignature):
        batch.verify_header(dcbor.encode(message), GATEWAY_PUB)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (good_payload({1: 3}), UnsupportedVersion),  # 2 is the time-flags version (issue 11 #6)
        ({k: v for k, v in good_payload().items() if k != 5}, InvalidPayload),
        (good_payload({2: b"\x00" * 16}), InvalidPayload),
        (good_payload({3: -1}), InvalidPayload),
        (good_payload({3: 2**63}), InvalidPayload),
        (good_payload({4: b"\x00" * 31}), InvalidPayload),
        (good_payload({5: "root"}), InvalidPayload),
        (good_payload({6: 0}), InvalidPayload),
        (good_payload({7: [1]}), InvalidPayload),
        (good_payload({7: [1, -2]}), InvalidPayload),
        (good_payload({3: 0}), ChainBroken),
    ],
)
def test_bad_header_payloads(payload: dict, error: type[RejectedMessage]) -> None:
    with pytest.raises(error):
        batch.verify_header(crafted(payload), GATEWAY_PUB)


def test_unknown_payload_keys_are_ignored() -> None:
    assert batch.verify_header(crafted(good_payload({99: "later"})), GATEWAY_PUB).batch_no == 3


def test_non_deterministic_and_oversized_headers() -> None:
    raw = header()
    with pytest.raises(NonDeterministic):
        batch.verify_header(b"\xd2\x9f" + raw[2:] + b"\xff", GATEWAY_PUB)  # indefinite-length array
    with pytest.raises(TooLarge):
        batch.verify_header(raw + bytes(batch.MAX_HEADER_SIZE), GATEWAY_PUB)
    with pytest.raises(Malformed):
        batch.verify_header(raw[:-1], GATEWAY_PUB)


@pytest.mark.parametrize(
    "changes",
    [
        {"count": 0},
        {"batch_no": -1},
        {"root": b"x"},
        {"prev_hash": b"\x01" * 32, "batch_no": 0},
        {"count": 2**63},
    ],
)
def test_sign_header_refuses_bad_fields(changes: dict) -> None:
    fields = dict(
        batch_no=1, prev_hash=b"\x01" * 32, root=b"\x02" * 32, count=1, first_received=0, last_received=0
    )
    fields.update(changes)
    with pytest.raises(ValueError):
        batch.sign_header(GATEWAY, **fields)


# --- uplink ------------------------------------------------------------------------------------------


def test_uplink_bundles_mode_round_trip() -> None:
    body = batch.build_uplink(header(), BUNDLES, "bundles")
    assert dcbor.decode(body) == {1: header(), 2: BUNDLES}
    uplink = batch.decode_uplink(body)
    assert uplink == UplinkBatch(header(), tuple(BUNDLES), None)
    assert uplink.mode == "bundles" and uplink.batch_hash == batch.batch_hash(header())
    assert batch.check_leaves(batch.verify_header(uplink.header, GATEWAY_PUB), uplink) == HASHES


def test_uplink_proofs_mode_round_trip() -> None:
    body = batch.build_uplink(header(), BUNDLES, "proofs")
    uplink = batch.decode_uplink(body)
    assert uplink.mode == "proofs" and uplink.bundles is None
    assert uplink.proofs is not None and [p.bundle_hash for p in uplink.proofs] == HASHES
    leaf = [batch.bundle_leaf_hash(h) for h in HASHES]
    path_of_2 = [leaf[3], merkle.node_hash(leaf[0], leaf[1]), leaf[4]]  # hashes, not bundle hashes
    assert dcbor.decode(body)[3][2] == [2, HASHES[2], path_of_2]
    assert batch.check_leaves(batch.verify_header(uplink.header, GATEWAY_PUB), uplink) == HASHES


def test_build_uplink_mode_name() -> None:
    with pytest.raises(ValueError):
        batch.build_uplink(header(), BUNDLES, "both")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        batch.encode_uplink(header())


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ([1, 2], InvalidStructure),
        ({1: b"h"}, InvalidStructure),
        ({1: b"h", 2: [b"b"], 3: []}, InvalidStructure),
        ({1: b"h", 2: [b"b"], 4: 0}, InvalidStructure),
        ({1: "h", 2: [b"b"]}, InvalidStructure),
        ({1: b"h", 2: []}, InvalidStructure),
        ({1: b"h", 2: [b"b", "c"]}, InvalidStructure),
        ({1: b"h", 3: []}, InvalidStructure),
        ({1: b"h", 3: [[0, b"x" * 32]]}, InvalidStructure),
        ({1: b"h", 3: [[-1, b"x" * 32, []]]}, InvalidStructure),
        ({1: b"h", 3: [[0, b"x" * 31, []]]}, InvalidStructure),
        ({1: b"h", 3: [[0, b"x" * 32, [b"y"]]]}, InvalidStructure),
        ({1: b"h", 3: [[0, b"x" * 32, [b"y" * 32] * 65]]}, InvalidStructure),
        ({"1": b"h", 2: [b"b"]}, InvalidStructure),
    ],
)
def test_bad_uplinks(value: object, error: type[RejectedMessage]) -> None:
    with pytest.raises(error):
        batch.decode_uplink(dcbor.encode(value))


def test_uplink_must_be_deterministic_cbor() -> None:
    body = batch.build_uplink(header(), BUNDLES[:1], "bundles")
    with pytest.raises(NonDeterministic):
        batch.decode_uplink(b"\xbf" + body[1:] + b"\xff")  # indefinite-length map
    with pytest.raises(Malformed):
        batch.decode_uplink(body[:-3])


def test_check_leaves_count_and_root() -> None:
    three = batch.verify_header(header(3), GATEWAY_PUB)
    with pytest.raises(BadProof, match="counts"):
        batch.check_leaves(three, UplinkBatch(three.raw, tuple(BUNDLES[:2]), None))
    with pytest.raises(BadProof, match="root"):
        batch.check_leaves(three, UplinkBatch(three.raw, (BUNDLES[0], BUNDLES[2], BUNDLES[1]), None))
    lying = batch.verify_header(header(4, root=batch.batch_root(HASHES[:3])), GATEWAY_PUB)
    with pytest.raises(BadProof):
        batch.check_leaves(lying, UplinkBatch(lying.raw, tuple(BUNDLES[:4]), None))


def test_check_leaves_proofs() -> None:
    parsed = batch.verify_header(header(), GATEWAY_PUB)
    proofs = batch.leaf_proofs(HASHES)
    swapped = (proofs[1], proofs[0], *proofs[2:])
    with pytest.raises(BadProof, match="order"):
        batch.check_leaves(parsed, UplinkBatch(parsed.raw, None, swapped))
    forged = LeafProof(2, b"\x00" * 32, proofs[2].path)
    with pytest.raises(BadProof, match="leaf 2"):
        batch.check_leaves(parsed, UplinkBatch(parsed.raw, None, (*proofs[:2], forged, *proofs[3:])))
    with pytest.raises(BadProof, match="counts"):
        batch.check_leaves(parsed, UplinkBatch(parsed.raw, None, tuple(proofs[:4])))


# --- proof documents ---------------------------------------------------------------------------------


def test_proof_documents_for_every_leaf() -> None:
    raw = header()
    for i, data in enumerate(BUNDLES):
        doc = batch.proof_document(raw, HASHES, i)
        assert set(doc) == {"bundle_hash", "leaf_index", "tree_size", "path", "header"}
        assert doc["bundle_hash"] == HASHES[i].hex() and doc["tree_size"] == 5
        text = json.dumps(doc)
        assert batch.verify_proof_document(text, GATEWAY_PUB, data).batch_hash == batch.batch_hash(raw)
        assert batch.verify_proof_document(json.loads(text), GATEWAY_PUB).count == 5


def test_proof_document_rejections() -> None:
    doc = batch.proof_document(header(), HASHES, 1)
    with pytest.raises(BadProof):
        batch.verify_proof_document(doc, GATEWAY_PUB, BUNDLES[2])
    with pytest.raises(BadProof):
        batch.verify_proof_document({**doc, "tree_size": 6}, GATEWAY_PUB)
    with pytest.raises(BadProof):
        batch.verify_proof_document({**doc, "leaf_index": 2}, GATEWAY_PUB)
    with pytest.raises(BadProof):
        batch.verify_proof_document({**doc, "bundle_hash": HASHES[2].hex()}, GATEWAY_PUB)
    with pytest.raises(BadProof):
        batch.verify_proof_document({**doc, "path": doc["path"][::-1]}, GATEWAY_PUB)
    with pytest.raises(UnknownDevice):
        batch.verify_proof_document(doc, OTHER.public_key())
    with pytest.raises(BadSignature):
        forged = bytearray(bytes.fromhex(doc["header"]))
        forged[-2] ^= 4
        batch.verify_proof_document({**doc, "header": forged.hex()}, GATEWAY_PUB)
    with pytest.raises(Malformed):
        batch.verify_proof_document("{not json", GATEWAY_PUB)
    for bad in (
        {**doc, "bundle_hash": doc["bundle_hash"].upper()},
        {**doc, "bundle_hash": doc["bundle_hash"][:-2]},
        {**doc, "path": ["zz"]},
        {**doc, "leaf_index": True},
        {**doc, "tree_size": "5"},
        {k: v for k, v in doc.items() if k != "header"},
        [doc],
    ):
        with pytest.raises(InvalidStructure):
            batch.verify_proof_document(bad, GATEWAY_PUB)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    index=st.integers(0, 4),
    field=st.sampled_from(["bundle_hash", "path", "header"]),
    position=st.integers(0, 10_000),
    bit=st.integers(0, 7),
)
def test_any_bit_flip_in_a_proof_document_fails(index: int, field: str, position: int, bit: int) -> None:
    doc = batch.proof_document(header(), HASHES, index)
    raw = bytes.fromhex("".join(doc["path"]) if field == "path" else doc[field])
    position %= len(raw)
    flipped = raw[:position] + bytes([raw[position] ^ (1 << bit)]) + raw[position + 1 :]
    if field == "path":
        changed = {**doc, "path": [flipped[i : i + 32].hex() for i in range(0, len(flipped), 32)]}
    else:
        changed = {**doc, field: flipped.hex()}
    with pytest.raises(RejectedMessage):
        batch.verify_proof_document(changed, GATEWAY_PUB, BUNDLES[index])


# --- version 2: time flags (issue 11 #6) -------------------------------------------------------------

FLAGS = {1: "stale", 3: "future"}


def flagged_header(flags: dict | None = FLAGS) -> bytes:
    return batch.sign_header(
        GATEWAY,
        batch_no=0,
        prev_hash=batch.ZERO_HASH,
        root=batch.batch_root(HASHES),
        count=5,
        first_received=1_700_000_000,
        last_received=1_700_000_060,
        time_flags=flags,
    )


@pytest.mark.parametrize("mode", batch.MODES)
def test_version_2_signs_the_time_flags_carried_in_the_uplink(mode: str) -> None:
    raw = flagged_header()
    parsed = batch.verify_header(raw, GATEWAY_PUB)
    assert parsed.version == 2 and parsed.time_flags_hash == batch.time_flags_hash(FLAGS)
    payload = dcbor.decode(dcbor.decode(raw).value[2])
    assert payload[1] == 2 and payload[8] == hashlib.sha256(dcbor.encode(FLAGS)).digest()
    uplink = batch.decode_uplink(batch.build_uplink(raw, BUNDLES, mode, FLAGS))
    assert uplink.time_flags == FLAGS
    assert batch.check_leaves(parsed, uplink) == HASHES
    assert batch.check_time_flags(parsed, uplink) == FLAGS


def test_version_2_without_flagged_leaves_signs_an_empty_map() -> None:
    parsed = batch.verify_header(flagged_header({}), GATEWAY_PUB)
    uplink = batch.decode_uplink(batch.build_uplink(parsed.raw, BUNDLES, "bundles", {}))
    assert parsed.version == 2 and batch.check_time_flags(parsed, uplink) == {}


def test_version_1_is_still_accepted_and_carries_no_flags() -> None:
    parsed = batch.verify_header(header(), GATEWAY_PUB)
    assert parsed.version == 1 and parsed.time_flags_hash is None
    uplink = batch.decode_uplink(batch.build_uplink(parsed.raw, BUNDLES, "proofs"))
    assert uplink.time_flags is None and batch.check_time_flags(parsed, uplink) == {}
    with pytest.raises(BadProof):  # flags a version 1 header does not sign
        batch.check_leaves(parsed, UplinkBatch(parsed.raw, tuple(BUNDLES), None, {0: "stale"}))


@pytest.mark.parametrize(
    "flags",
    [
        None,  # dropped on the way
        {1: "stale"},  # one removed
        {1: "stale", 3: "stale"},  # one changed
        {1: "stale", 3: "future", 4: "future"},  # one added
        {1: "stale", 3: "future", 5: "future"},  # a leaf the batch does not have
        {1: "stale", 3: "late"},  # not a known flag
    ],
)
def test_time_flags_other_than_those_signed_are_bad_proof(flags: dict | None) -> None:
    parsed = batch.verify_header(flagged_header(), GATEWAY_PUB)
    with pytest.raises(BadProof):
        batch.check_leaves(parsed, UplinkBatch(parsed.raw, tuple(BUNDLES), None, flags))


@pytest.mark.parametrize(
    "changes",
    [{1: 2}, {1: 2, 8: b"\x00" * 31}, {1: 2, 8: "digest"}],
)
def test_version_2_header_without_a_flags_hash_is_invalid(changes: dict) -> None:
    with pytest.raises(InvalidPayload):
        batch.verify_header(crafted(good_payload(changes)), GATEWAY_PUB)


@pytest.mark.parametrize("value", [[1, 2], {-1: "stale"}, {0: 1}, {"0": "stale"}])
def test_malformed_uplink_time_flags(value: object) -> None:
    body = dcbor.encode({1: header(), 2: BUNDLES, 4: value})
    with pytest.raises(InvalidStructure):
        batch.decode_uplink(body)


@pytest.mark.parametrize("flags", [{5: "stale"}, {0: "late"}, {-1: "stale"}])
def test_sign_header_refuses_bad_time_flags(flags: dict) -> None:
    with pytest.raises(ValueError):
        flagged_header(flags)
