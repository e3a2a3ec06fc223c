# pinseal.wire.cose in the MicroPython VM: Sig_structure and COSE_Sign1 bytes, strict parsing, and the COSE WG
# EdDSA examples (protocol/vectors/third_party/cose-wg). Tests that need pinseal.crypto.ed25519 skip until
# it exists.
import json

from pinseal.crypto import ed25519
from pinseal.wire import WireError, cose
from pinseal.wire.cbor import Tag, dumps, loads

COSE_WG = "/vectors/third_party/cose-wg/"
KID = bytes(range(16))
PAYLOAD = b"\xa1\x01\x01"


def _load(name):
    with open(COSE_WG + name) as f:
        return json.load(f)


def _rejects(data, reason):
    try:
        cose.parse(data)
    except WireError as e:
        assert e.reason == reason, (e, reason)
        return
    raise AssertionError("parsed " + bytes(data).hex())


class FakeSigner:
    """Records what it was asked to sign; the signature is a fixed pattern (no crypto needed)."""

    def __init__(self):
        self.signed = []

    async def sign_async(self, *parts):
        self.signed.append(b"".join(bytes(p) for p in parts))  # the message is the parts' concatenation
        return bytes(range(64))


class SyncSigner:
    def sign(self, msg):
        return bytes(64)


def _message(protected, unprotected=None, payload=PAYLOAD, signature=bytes(64), tag=18):
    return dumps(Tag(tag, [protected, {} if unprotected is None else unprotected, payload, signature]))


def test_protected_kid():
    assert cose.protected_kid(KID).hex() == "a2012704" + "50" + KID.hex()
    assert loads(cose.protected_kid(KID)) == {1: -8, 4: KID}
    try:
        cose.protected_kid(bytes(15))
    except ValueError:
        pass
    else:
        raise AssertionError("15-byte kid accepted")


def test_sig_structure_matches_cose_wg_examples():
    for name in ("eddsa-sig-01.json", "eddsa-sig-02.json"):
        v = _load(name)
        parts = loads(bytes.fromhex(v["output"]["cbor"])).value
        tbs = cose.sig_structure(parts[0], v["input"]["plaintext"].encode())
        assert tbs == bytes.fromhex(v["intermediates"]["ToBeSign_hex"]), name


def test_sig_structure_with_long_payload():
    payload = bytes(300)
    # ["Signature1", h'a0', h'', payload]: 84 6a "Signature1" 41 a0 40 59 012c ...
    assert (
        cose.sig_structure(b"\xa0", payload)
        == bytes.fromhex("846a5369676e61747572653141a04059012c") + payload
    )


def test_parse_cose_wg_ed25519_example():
    v = _load("eddsa-sig-01.json")
    msg = cose.parse(bytes.fromhex(v["output"]["cbor"]))
    assert msg.protected == bytes.fromhex("a201270300")
    assert msg.headers == {1: -8, 3: 0}
    assert msg.unprotected == {4: b"11"}
    assert msg.kid() == b"11"
    assert msg.payload == b"This is the content."
    assert len(msg.signature) == 64
    try:
        cose.pinseal_kid(msg)  # generic COSE, but not pinseal's header profile
    except WireError as e:
        assert e.reason == "invalid_structure"
    else:
        raise AssertionError("pinseal profile accepted the COSE WG header")


async def test_cose_wg_ed448_example_is_unsupported():
    v = _load("eddsa-sig-02.json")
    _rejects(bytes.fromhex(v["output"]["cbor"]), "unsupported_algorithm")
    # and a 57-byte (Ed448) public key is refused before any crypto runs
    msg = cose.parse(_message(cose.protected_kid(KID)))
    try:
        await cose.verify(msg, bytes.fromhex(v["input"]["sign0"]["key"]["x_hex"]))
    except WireError as e:
        assert e.reason == "unsupported_algorithm"
    else:
        raise AssertionError("Ed448 key accepted")


async def test_sign_writes_a_tagged_cose_sign1():
    signer = FakeSigner()
    protected = cose.protected_kid(KID)
    data = await cose.sign(signer, protected, PAYLOAD)
    assert signer.signed == [cose.sig_structure(protected, PAYLOAD)]
    expected = "d284" + "55" + protected.hex() + "a0" + "43" + PAYLOAD.hex() + "5840" + bytes(range(64)).hex()
    assert data.hex() == expected
    assert len(data) == cose.sign1_size(len(protected), len(PAYLOAD))
    msg = cose.parse(data)
    assert cose.pinseal_kid(msg) == KID
    assert msg.payload == PAYLOAD and msg.signature == bytes(range(64))


async def test_sign_with_a_sync_signer_and_unprotected_header():
    data = await cose.sign(SyncSigner(), bytes.fromhex("a201270300"), b"x", {4: b"11"})
    assert data.hex() == "d28445a201270300a1044231314178" + "5840" + "00" * 64


def test_sign1_size_counts_length_heads():
    for n in (0, 23, 24, 255, 256, 2000, 70000):
        assert cose.sign1_size(21, n) == len(dumps(Tag(18, [bytes(21), {}, bytes(n), bytes(64)])))


def test_parse_rejects_wrong_tag():
    _rejects(dumps([cose.protected_kid(KID), {}, PAYLOAD, bytes(64)]), "wrong_tag")
    _rejects(_message(cose.protected_kid(KID), tag=17), "wrong_tag")  # COSE_Mac0
    _rejects(dumps(Tag(18, 1)) + b"", "invalid_structure")
    _rejects(b"\x00", "wrong_tag")


def test_parse_rejects_bad_shapes():
    p = cose.protected_kid(KID)
    _rejects(dumps(Tag(18, [p, {}, PAYLOAD])), "invalid_structure")
    _rejects(dumps(Tag(18, [p, {}, PAYLOAD, bytes(64), b""])), "invalid_structure")
    _rejects(dumps(Tag(18, [loads(p), {}, PAYLOAD, bytes(64)])), "invalid_structure")  # header not a bstr
    _rejects(dumps(Tag(18, [p, [], PAYLOAD, bytes(64)])), "invalid_structure")
    _rejects(dumps(Tag(18, [p, {}, None, bytes(64)])), "invalid_structure")  # detached payload
    _rejects(dumps(Tag(18, [p, {}, "text", bytes(64)])), "invalid_structure")
    _rejects(dumps(Tag(18, [p, {}, PAYLOAD, "sig"])), "invalid_structure")
    _rejects(_message(p, signature=bytes(63)), "invalid_structure")
    _rejects(_message(dumps([1, -8])), "invalid_structure")  # protected header not a map


def test_parse_rejects_other_algorithms_and_crit():
    _rejects(_message(dumps({1: -7, 4: KID})), "unsupported_algorithm")  # ES256
    _rejects(_message(dumps({4: KID})), "unsupported_algorithm")  # no alg
    _rejects(_message(b""), "unsupported_algorithm")  # empty protected header
    _rejects(_message(dumps({1: "EdDSA", 4: KID})), "unsupported_algorithm")
    _rejects(_message(dumps({4: KID}), {1: -8}), "unsupported_algorithm")  # alg only unprotected
    _rejects(_message(dumps({1: -8, 2: [4], 4: KID})), "unsupported_algorithm")  # crit
    _rejects(_message(dumps({1: -8}), {2: [4], 4: KID}), "unsupported_algorithm")
    _rejects(_message(cose.protected_kid(KID), signature=bytes(114)), "unsupported_algorithm")  # Ed448


def test_parse_rejects_label_in_both_headers():
    _rejects(_message(cose.protected_kid(KID), {4: KID}), "invalid_structure")


def test_parse_rejects_non_deterministic_bytes():
    _rejects(
        bytes.fromhex("d28458") + b"\x15" + cose.protected_kid(KID) + b"\xa0\x40\x58\x40" + bytes(64),
        "non_deterministic",
    )
    # protected header with unsorted keys: {4: kid, 1: -8}
    _rejects(_message(b"\xa2\x04\x50" + KID + b"\x01\x27"), "non_deterministic")
    _rejects(_message(cose.protected_kid(KID)) + b"\x00", "malformed")


def test_pinseal_profile():
    msg = cose.parse(_message(cose.protected_kid(KID)))
    assert cose.pinseal_kid(msg) == KID
    for protected, unprotected in (
        (dumps({1: -8, 4: bytes(15)}), {}),
        (dumps({1: -8, 4: bytes(17)}), {}),
        (dumps({1: -8, 4: "0123456789abcdef"}), {}),
        (dumps({1: -8}), {4: KID}),
        (dumps({1: -8, 3: 0, 4: KID}), {}),
        (cose.protected_kid(KID), {5: b"iv"}),
    ):
        msg = cose.parse(_message(protected, unprotected))
        try:
            cose.pinseal_kid(msg)
        except WireError as e:
            assert e.reason == "invalid_structure"
        else:
            raise AssertionError("profile accepted %r %r" % (protected, unprotected))


# ------------------------------------------------------------------------- with pinseal.crypto.ed25519


async def test_verify_cose_wg_ed25519_example():
    v = _load("eddsa-sig-01.json")
    data = bytes.fromhex(v["output"]["cbor"])
    public_key = bytes.fromhex(v["input"]["sign0"]["key"]["x_hex"])
    await cose.verify(cose.parse(data), public_key)
    tampered = bytearray(data)
    tampered[-1] ^= 1
    try:
        await cose.verify(cose.parse(tampered), public_key)
    except WireError as e:
        assert e.reason == "bad_signature"
    else:
        raise AssertionError("tampered signature verified")
    other = bytearray(data)
    other[-70] ^= 1  # inside the payload
    try:
        await cose.verify(cose.parse(other), public_key)
    except WireError as e:
        assert e.reason == "bad_signature"
    else:
        raise AssertionError("tampered payload verified")


async def test_resign_cose_wg_ed25519_example_byte_for_byte():
    v = _load("eddsa-sig-01.json")
    key = ed25519.SigningKey(bytes.fromhex(v["input"]["sign0"]["key"]["d_hex"]))
    assert key.public_key == bytes.fromhex(v["input"]["sign0"]["key"]["x_hex"])
    data = await cose.sign(key, dumps({1: -8, 3: 0}), v["input"]["plaintext"].encode(), {4: b"11"})
    assert data == bytes.fromhex(v["output"]["cbor"])


async def test_sign_then_verify_pinseal_message():
    key = ed25519.SigningKey(bytes(range(32)))
    data = await cose.sign(key, cose.protected_kid(KID), PAYLOAD)
    msg = cose.parse(data)
    await cose.verify(msg, key.public_key)
    other = ed25519.SigningKey(bytes(32)).public_key
    try:
        await cose.verify(msg, other)
    except WireError as e:
        assert e.reason == "bad_signature"
    else:
        raise AssertionError("verified under another key")


# ------------------------------------------------------------------------------- normative vectors


def test_bundle_vectors_envelope_reasons():
    # The device never verifies bundles, but its parser must agree with the host on every envelope-level
    # rejection of the normative bundle vectors (and accept the envelope of every accepted one).
    import os

    envelope = ("malformed", "non_deterministic", "wrong_tag", "invalid_structure", "unsupported_algorithm")
    checked = 0
    for name in sorted(os.listdir("/vectors")):
        if not name.startswith("bundle_") or not name.endswith(".json"):
            continue
        with open("/vectors/" + name) as f:
            v = json.load(f)
        try:
            msg = cose.parse(bytes.fromhex(v["bundle"]))
            cose.pinseal_kid(msg)
            loads(msg.payload)
        except WireError as e:
            assert e.reason == v["expect"], (name, e.reason, v["expect"])
            checked += 1
            continue
        assert v["expect"] not in envelope, (name, v["expect"])
        checked += 1
    assert checked, "no bundle vectors"
