# pinseal.wire.ack in the MicroPython VM: acks come from the network, so besides the good path every
# truncation and a few hundred bit flips must end in a WireError (a ValueError), never another exception
# and never an accepted ack. Signature tests skip until pinseal.crypto.ed25519 exists; vector tests
# skip until protocol/vectors has ack vectors.
import random

import vectors
from pinseal.crypto import ed25519
from pinseal.identity import key_id
from pinseal.wire import WireError, ack, cose
from pinseal.wire.cbor import Tag, dumps, loads

# Literal expectations computed on the host with cbor2 6.2.1 + cryptography: the gateway key has seed
# bytes(range(32, 64)), the device seed bytes(range(32)); each ack is
#   dumps(CBORTag(18, [dumps({1: -8, 4: signer_kid}), {}, payload, signer.sign(Sig_structure)]))
# with payload = dumps({1: 1, 2: device, 3: 2**32 + 6, 4: BUNDLE_HASH, 5: 1700000100}).
GATEWAY_PUBLIC = bytes.fromhex("29acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd7")
GATEWAY_KID = bytes.fromhex("24f6ed6acbfe1009c030d7ca567c33ca")
DEVICE_PUBLIC = bytes.fromhex("03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")
DEVICE_KID = bytes.fromhex("56475aa75463474c0285df5dbf2bcab7")
BUNDLE_HASH = bytes.fromhex("5aa98421bc583a8603e5c92b76b7f7d3c7202f227375875fd89b47fffcb6fd7b")
SEQ = 2**32 + 6
TIME_S = 1700000100
ACK = bytes.fromhex(
    "d28455a20127045024f6ed6acbfe1009c030d7ca567c33caa05848a50101025056475aa75463474c0285df5dbf2bcab7031b0000"
    "0001000000060458205aa98421bc583a8603e5c92b76b7f7d3c7202f227375875fd89b47fffcb6fd7b051a6553f1645840"
    "2cf6a056e1709f4ae0f9c7c8ee851cdc965ef21940d7cc180d2fc110682041e7ccac86de41e758bf700ff35f4ec41bf98939"
    "4de386326e0851022cc7d04e3d0b"
)
# the same, for device key id 16 zero bytes (signed correctly by the gateway)
ACK_OTHER_DEVICE = bytes.fromhex(
    "d28455a20127045024f6ed6acbfe1009c030d7ca567c33caa05848a50101025000000000000000000000000000000000031b0000"
    "0001000000060458205aa98421bc583a8603e5c92b76b7f7d3c7202f227375875fd89b47fffcb6fd7b051a6553f1645840"
    "16c46dce53103d67541488aa253d3e62ab4faab25154fea7cf8b94db6561016bdb16917f0174f1c929626c61ede232062bc6"
    "ea91b366aac8e05fa5e9fe209f0f"
)
# the ACK payload, signed by the device's own key instead of the gateway's
ACK_SIGNED_BY_DEVICE = bytes.fromhex(
    "d28455a20127045056475aa75463474c0285df5dbf2bcab7a05848a50101025056475aa75463474c0285df5dbf2bcab7031b0000"
    "0001000000060458205aa98421bc583a8603e5c92b76b7f7d3c7202f227375875fd89b47fffcb6fd7b051a6553f1645840"
    "3a229b779d1e703d840c7348c9f66c033ab8ae384d72bcbf4547b4fc0b3c36a471e0ec715064a47222295d99b5e59137ce45"
    "2d1048f3ca8d23bb48cc825d730f"
)


def _fields():
    return {1: 1, 2: DEVICE_KID, 3: SEQ, 4: BUNDLE_HASH, 5: TIME_S}


def _payload_rejects(payload, reason):
    try:
        ack.parse_payload(payload, DEVICE_KID)
    except WireError as e:
        assert e.reason == reason, (e, reason)
        return
    raise AssertionError("accepted payload " + bytes(payload).hex())


async def _verify_rejects(data, reason=None):
    try:
        result = await ack.verify(data, GATEWAY_PUBLIC, DEVICE_KID)
    except WireError as e:
        if reason is not None:
            assert e.reason == reason, (e, reason)
        return e
    raise AssertionError("accepted ack %s as %r" % (bytes(data).hex(), result))


def test_parse_literal_ack_without_the_signature():
    msg = ack.parse(ACK)
    assert cose.pinseal_kid(msg) == GATEWAY_KID
    assert ack.parse_payload(msg.payload, DEVICE_KID) == (SEQ, BUNDLE_HASH, TIME_S, None)


def test_payload_for_another_device_is_wrong_topic():
    _payload_rejects(ack.parse(ACK_OTHER_DEVICE).payload, "wrong_topic")


def test_payload_checks():
    _payload_rejects(dumps([1]), "invalid_payload")
    _payload_rejects(dumps({2: DEVICE_KID}), "invalid_payload")  # no version
    _payload_rejects(dumps({1: 2, 2: DEVICE_KID}), "unsupported_version")
    _payload_rejects(dumps({1: "1"}), "unsupported_version")
    for key, bad in (
        (2, bytes(15)),
        (2, "device"),
        (3, -1),
        (3, b"\x01"),
        (4, bytes(31)),
        (5, -5),
        (5, None),
    ):
        fields = _fields()
        fields[key] = bad
        _payload_rejects(dumps(fields), "invalid_payload")
    for key in (2, 3, 4, 5):
        fields = _fields()
        del fields[key]
        _payload_rejects(dumps(fields), "invalid_payload")
    _payload_rejects(b"\xa1\x01", "malformed")
    _payload_rejects(dumps(_fields()) + b"\x00", "malformed")


def test_payload_ignores_unknown_keys():
    fields = _fields()
    fields[8] = [1, 2]
    fields[-1] = "future"
    fields["x"] = b"y"
    assert ack.parse_payload(dumps(fields), DEVICE_KID) == (SEQ, BUNDLE_HASH, TIME_S, None)


def test_parse_checks_the_pinseal_header_profile():
    payload = dumps(_fields())
    for protected, unprotected, reason in (
        (dumps({1: -8, 4: GATEWAY_KID, 5: b""}), {}, "invalid_structure"),
        (cose.protected_kid(GATEWAY_KID), {6: b"x"}, "invalid_structure"),
        (dumps({1: -8, 4: GATEWAY_KID[:8]}), {}, "invalid_structure"),
        (dumps({1: -7, 4: GATEWAY_KID}), {}, "unsupported_algorithm"),
    ):
        try:
            ack.parse(dumps(Tag(18, [protected, unprotected, payload, bytes(64)])))
        except WireError as e:
            assert e.reason == reason, (e, reason)
        else:
            raise AssertionError("parsed")


def test_too_large():
    try:
        ack.parse(bytes(2049))
    except WireError as e:
        assert e.reason == "too_large"
    else:
        raise AssertionError("parsed 2049 bytes")


async def test_every_truncation_is_rejected():
    for n in range(len(ACK)):
        await _verify_rejects(ACK[:n], "malformed")
    await _verify_rejects(ACK + b"\x00", "malformed")
    for _, v in vectors.load("ack"):
        if v["expect"] != "accept":
            continue
        data = bytes.fromhex(v["ack"])
        public_key = bytes.fromhex(v["public_key"])
        device = bytes.fromhex(v["device_key_id"])
        for n in range(len(data)):
            try:
                await ack.verify(data[:n], public_key, device)
            except WireError as e:
                assert e.reason == "malformed", (n, e)
            else:
                raise AssertionError("accepted a truncated ack")


async def test_signed_by_another_key_is_unknown_device():
    # rejected on the kid, before any signature arithmetic
    await _verify_rejects(ACK_SIGNED_BY_DEVICE, "unknown_device")


def test_fuzz_bit_flips_before_the_signature():
    # Structure and payload checks alone: each flip ends in a WireError or in a message whose
    # bytes re-encode identically (then only the signature can reject it; see the test below).
    random.seed(0x5EA1)
    for _ in range(2000):
        data = bytearray(ACK)
        for _ in range(1 + random.getrandbits(1)):
            data[random.getrandbits(16) % len(data)] ^= 1 << random.getrandbits(3)
        try:
            msg = ack.parse(data)
            ack.parse_payload(msg.payload, DEVICE_KID)
        except WireError:
            continue
        assert dumps(loads(data)) == bytes(data)


def test_fuzz_random_payload_bytes():
    random.seed(99)
    for _ in range(2000):
        n = random.getrandbits(6)
        data = bytes(random.getrandbits(8) for _ in range(n))
        try:
            ack.parse_payload(data, DEVICE_KID)
        except WireError:
            continue
        raise AssertionError("random payload accepted: " + data.hex())


# ------------------------------------------------------------------------- with pinseal.crypto.ed25519


async def test_verify_literal_ack():
    assert await ack.verify(ACK, GATEWAY_PUBLIC, DEVICE_KID) == (SEQ, BUNDLE_HASH, TIME_S, None)
    assert await ack.verify(ACK, GATEWAY_PUBLIC, DEVICE_KID, GATEWAY_KID) == (SEQ, BUNDLE_HASH, TIME_S, None)
    assert key_id(GATEWAY_PUBLIC) == GATEWAY_KID


async def test_verify_rejects_bad_signature_and_other_device():
    for i in (-1, -33, -64):
        tampered = bytearray(ACK)
        tampered[i] ^= 0x01
        await _verify_rejects(tampered, "bad_signature")
    await _verify_rejects(ACK_OTHER_DEVICE, "wrong_topic")
    try:
        await ack.verify(ACK, GATEWAY_PUBLIC, bytes(16))
    except WireError as e:
        assert e.reason == "wrong_topic"
    else:
        raise AssertionError("ack for another device accepted")


async def test_fuzz_bit_flips_never_accepted():
    import asyncio

    random.seed(0xACC)
    for i in range(120):
        data = bytearray(ACK)
        data[random.getrandbits(16) % len(data)] ^= 1 << random.getrandbits(3)
        await _verify_rejects(data)
        if i % 8 == 0:
            await asyncio.sleep_ms(1)  # back to JS now and then, so the VM collects the garbage


async def test_verify_ack_signed_by_a_fresh_gateway_key():
    gateway = ed25519.SigningKey(bytes(range(100, 132)))
    kid = key_id(gateway.public_key)
    data = await cose.sign(gateway, cose.protected_kid(kid), dumps(_fields()))
    assert await ack.verify(data, gateway.public_key, DEVICE_KID) == (SEQ, BUNDLE_HASH, TIME_S, None)


# ------------------------------------------------------------------------------- normative vectors


def test_vectors_acks_up_to_the_signature():
    # Everything but the signature: each vector's reason comes out, except bad_signature, which these
    # checks cannot see (the full test below needs pinseal.crypto.ed25519).
    for name, v in vectors.load("ack"):
        data = bytes.fromhex(v["ack"])
        device = bytes.fromhex(v["device_key_id"])
        try:
            msg = ack.parse(data)
            if msg.headers[cose.HDR_KID] != key_id(bytes.fromhex(v["public_key"])):
                raise WireError("unknown_device", "kid")
            result = ack.parse_payload(msg.payload, device)
        except WireError as e:
            assert e.reason == v["expect"], (name, e.reason, v["expect"])
            continue
        assert v["expect"] in ("accept", "bad_signature"), (name, v["expect"])
        if v["expect"] == "accept":
            i = v["input"]
            assert result == (i["seq"], bytes.fromhex(i["bundle_hash"]), i["time"], None), name


async def _verify_vectors(kind, expected):
    """Every vector of `kind` through ack.verify: accepted ones give expected(input), the others their
    reason; returns (accepted, rejected)."""
    accepted = rejected = 0
    for name, v in vectors.load(kind):
        data = bytes.fromhex(v[kind])
        device = bytes.fromhex(v["device_key_id"])
        public_key = bytes.fromhex(v["public_key"])
        if v["expect"] == "accept":
            assert await ack.verify(data, public_key, device) == expected(v["input"]), name
            accepted += 1
            continue
        try:
            await ack.verify(data, public_key, device)
        except WireError as e:
            assert e.reason == v["expect"], (name, e.reason, v["expect"])
            rejected += 1
        else:
            raise AssertionError(name + " accepted")
    return accepted, rejected


async def test_vectors_acks():
    accepted, rejected = await _verify_vectors(
        "ack", lambda i: (i["seq"], bytes.fromhex(i["bundle_hash"]), i["time"], None)
    )
    assert accepted > 0 and rejected > 0


# ------------------------------------------------------------------ signed rejections (protocol §5.1)


def _rejection_fields():
    return {1: 1, 2: DEVICE_KID, 4: BUNDLE_HASH, 5: TIME_S, 6: "conflict", 7: 1016}


def test_rejection_payload_reads_its_reason_and_next_seq():
    got = ack.parse_payload(dumps(_rejection_fields()), DEVICE_KID)
    assert got == (1016, BUNDLE_HASH, TIME_S, "conflict")


def test_rejection_payload_checks():
    for key, bad in ((3, 1015), (6, b"conflict"), (6, ""), (6, "x" * 33), (6, 7), (7, -1), (7, "1016")):
        fields = _rejection_fields()
        fields[key] = bad
        _payload_rejects(dumps(fields), "invalid_payload")
    fields = _rejection_fields()
    del fields[7]
    _payload_rejects(dumps(fields), "invalid_payload")
    fields = _rejection_fields()
    fields[2] = bytes(16)
    _payload_rejects(dumps(fields), "wrong_topic")


async def test_vectors_rejections():
    accepted, rejected = await _verify_vectors(
        "rejection", lambda i: (i["next_seq"], bytes.fromhex(i["bundle_hash"]), i["time"], i["reason"])
    )
    assert accepted == 3 and rejected > 0
