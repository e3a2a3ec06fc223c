# pinseal.wire.bundle in the MicroPython VM: payload and bundle bytes exactly as docs/protocol.md §3 and the
# normative vectors (protocol/vectors/*.json, at /vectors) say. Signing tests skip until
# pinseal.crypto.ed25519 exists; vector tests skip until the vectors exist.

import vectors
from pinseal.crypto import ed25519
from pinseal.wire import WireError, bundle, cose
from pinseal.wire.cbor import loads

T_H_P = ("t", "Cel", (-2, 2150)), ("h", "%RH", (-2, 4512)), ("p", "Pa", 101325)
READINGS = [
    (1700000000, T_H_P),
    (1700000060, (("t", None, (-2, -510)), ("h", None, "ENODEV"), ("p", "Pa", 99000))),
]
BOOT = 7
SEQ = 2**32 + 5  # beyond 32 bits on purpose: small ints are 31-bit on the boards
PREV = bytes(range(16))
STATUS = (3912, -67, 3600, 2, 0)
TIME_SOURCE = 1

# Literal expectations computed on the host with cbor2 6.2.1 (canonical=True; every map key here encodes in
# one byte, where cbor2's order and RFC 8949 §4.2.1 agree) and cryptography (Ed25519, seed bytes(range(32))):
#   payload = dumps({1: 1, 2: 7, 3: 2**32 + 5, 4: bytes(range(16)), 5: [3912, -67, 3600, 2, 0], 6: 1,
#                    7: <the SenML pack of READINGS>})
#   bundle  = dumps(CBORTag(18, [dumps({1: -8, 4: kid}), {}, payload,
#                    key.sign(dumps(["Signature1", dumps({1: -8, 4: kid}), b"", payload]))]))
# with kid = sha256(public key)[:16]. Replaced by the normative vectors' bytes once those exist.
DEVICE_SEED = bytes(range(32))
DEVICE_PUBLIC = bytes.fromhex("03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")
DEVICE_KID = bytes.fromhex("56475aa75463474c0285df5dbf2bcab7")
PAYLOAD = bytes.fromhex(
    "a701010207031b00000001000000050450000102030405060708090a0b0c0d0e0f0585190f483842190e10020006010786a40061"
    "74016343656c02c48221190866221a6553f100a3006168016325524802c482211911a0a300617001625061021a00018bcda30061"
    "7402c482213901fd221a6553f13ca20061680366454e4f444556a300617001625061021a000182b8"
)
BUNDLE = bytes.fromhex(
    "d28455a20127045056475aa75463474c0285df5dbf2bcab7a05890"
    + PAYLOAD.hex()
    + "58404dde6df5c2716960f50ae1d59b71f27d61111c0aec703daf6df0ae5caedb398a1975cea0110094bad0f83daf53e1e66bac"
    "abd9d3343a4d38d2cb5b78a39cbc01"
)
BUNDLE_HASH = bytes.fromhex("5aa98421bc583a8603e5c92b76b7f7d3c7202f227375875fd89b47fffcb6fd7b")


class FakeSigner:
    """Records what it was asked to sign; returns 64 fixed bytes (no crypto needed)."""

    def __init__(self, signature=bytes(64)):
        self.signed = []
        self.signature = signature

    async def sign_async(self, *parts):
        self.signed.append(b"".join(bytes(p) for p in parts))  # the message is the parts' concatenation
        return self.signature


def _readings(vector_readings):
    # vector JSON -> the firmware representation: (time_s, ((name, unit, value), ...))
    out = []
    for r in vector_readings:
        records = []
        for rec in r["records"]:
            value = rec["vs"] if "vs" in rec else rec["v"]
            if type(value) is list:
                value = (value[0], value[1])
            records.append((rec["n"], rec.get("u"), value))
        out.append((r["time"], tuple(records)))
    return out


def _reproducible(kind):
    # accepted vectors a device must reproduce byte for byte from input and seed (the others carry
    # content no device writes: padding keys, extra status elements, unknown SenML labels)
    found = [
        (name, v)
        for name, v in vectors.load(kind)
        if v.get("expect") == "accept" and v.get("reproducible") is True
    ]
    assert found, "no reproducible %s vectors" % kind
    return found


def _seal_args(v):
    i = v["input"]
    return (
        i["boot"],
        i["seq"],
        bytes.fromhex(i["prev"]),
        tuple(i["status"]),
        i["time_source"],
        _readings(i["readings"]),
    )


def test_payload_bytes():
    assert bundle.payload(BOOT, SEQ, PREV, STATUS, TIME_SOURCE, READINGS) == PAYLOAD


def test_payload_decodes_to_the_protocol_fields():
    fields = loads(PAYLOAD)
    assert sorted(fields) == [1, 2, 3, 4, 5, 6, 7]
    assert fields[1] == 1 and fields[2] == BOOT and fields[3] == SEQ and fields[4] == PREV
    assert fields[5] == list(STATUS) and fields[6] == TIME_SOURCE and len(fields[7]) == 6


async def test_seal_signs_the_sig_structure_and_wraps_it():
    signer = FakeSigner()
    data = await bundle.seal(signer, DEVICE_KID, BOOT, SEQ, PREV, STATUS, TIME_SOURCE, READINGS)
    protected = cose.protected_kid(DEVICE_KID)
    assert signer.signed == [cose.sig_structure(protected, PAYLOAD)]
    assert data[:-64] == BUNDLE[:-64] and data[-64:] == bytes(64)


def test_bundle_hash_and_chain_link():
    assert bundle.bundle_hash(BUNDLE) == BUNDLE_HASH
    assert bundle.chain_link(BUNDLE) == BUNDLE_HASH[:16]


async def _sizes(boot, seq, status, reading, counts):
    sizes = []
    for n in counts:
        readings = [(1767225600 + 60 * i, reading) for i in range(n)]
        data = await bundle.seal(FakeSigner(), DEVICE_KID, boot, seq, PREV, status, 1, readings)
        sizes.append(len(data))
    return sizes


async def test_sizes_within_the_budget():
    # docs/protocol.md §3: one reading of three values fits in 200 bytes, each further one adds <= 56.
    typical = await _sizes(3, 1000, (3912, -67, 3600, 0, 0), T_H_P, range(1, 33))
    print("bundle sizes (typical): 1 reading %d bytes, 2: %d, 32: %d" % (typical[0], typical[1], typical[31]))
    assert typical[0] <= 200
    for a, b in zip(typical, typical[1:]):
        assert b - a <= 56
    assert typical[31] <= bundle.MAX_BUNDLE_SIZE
    # widest values: 9-byte seq, 5-byte boot/uptime, 3-byte mantissas, 5-byte pressure
    wide_reading = (("t", "Cel", (-2, -4000)), ("h", "%RH", (-2, 10000)), ("p", "Pa", 110000))
    wide = await _sizes(2**32 - 1, 2**40, (4200, -120, 2**32 - 1, 65535, 255), wide_reading, range(1, 33))
    print("bundle sizes (widest integers): 1 reading %d bytes, 2: %d, 32: %d" % (wide[0], wide[1], wide[31]))
    for a, b in zip(wide, wide[1:]):
        assert b - a <= 56
    assert wide[31] <= bundle.MAX_BUNDLE_SIZE


async def test_too_large_is_refused_before_signing():
    signer = FakeSigner()
    long_name = "x" * 200
    readings = [(i, ((long_name, None, i),)) for i in range(10)]
    try:
        await bundle.seal(signer, DEVICE_KID, BOOT, SEQ, PREV, STATUS, TIME_SOURCE, readings)
    except WireError as e:
        assert e.reason == "too_large"
    else:
        raise AssertionError("sealed a bundle over 2048 bytes")
    assert signer.signed == []


def test_payload_rejects_bad_arguments():
    good = [BOOT, SEQ, PREV, STATUS, TIME_SOURCE, READINGS]
    for index, bad in (
        (0, -1),
        (1, 1.0),
        (2, bytes(15)),
        (2, bytes(32)),
        (3, (1, 2, 3, 4)),
        (3, (1, 2, 3, 4, -1)),
        (3, (-1, 2, 3, 4, 5)),
        (3, (1, 2.5, 3, 4, 5)),
        (4, 3),
        (4, -1),
        (5, []),
    ):
        args = list(good)
        args[index] = bad
        try:
            bundle.payload(*args)
        except ValueError:
            continue
        raise AssertionError("payload accepted argument %d = %r" % (index, bad))
    try:
        bundle.payload(BOOT, SEQ, PREV, STATUS, TIME_SOURCE, [(1, (("t", None, 1.5),))])
    except ValueError:
        pass
    else:
        raise AssertionError("float value accepted")


def test_payload_written_a_reading_at_a_time_is_the_same_bytes():
    # the app writes one reading per task step (begin, write_reading..., finish): same bytes as payload()
    from pinseal.wire import senml

    enc = bundle.begin(BOOT, SEQ, PREV, STATUS, TIME_SOURCE, senml.record_count(READINGS))
    for time_s, records in READINGS:
        senml.write_reading(enc, time_s, records)
    protected, body = bundle.finish(DEVICE_KID, enc)
    assert bytes(body) == PAYLOAD and protected == cose.protected_kid(DEVICE_KID)
    for n_records in (0, -1, 1.0):
        try:
            bundle.begin(BOOT, SEQ, PREV, STATUS, TIME_SOURCE, n_records)
        except ValueError:
            continue
        raise AssertionError("begin accepted %r records" % n_records)


def test_first_bundle_has_zero_prev():
    fields = loads(bundle.payload(0, 0, bytes(16), (0, 0, 0, 0, 0), 0, [(12, T_H_P)]))
    assert fields[4] == bytes(16) and fields[6] == 0 and fields[7][0][-3] == 12


# ------------------------------------------------------------------------- with pinseal.crypto.ed25519


async def test_seal_literal_bundle_byte_for_byte():
    key = ed25519.SigningKey(DEVICE_SEED)
    assert key.public_key == DEVICE_PUBLIC
    data = await bundle.seal(key, DEVICE_KID, BOOT, SEQ, PREV, STATUS, TIME_SOURCE, READINGS)
    assert data == BUNDLE
    msg = cose.parse(data)
    await cose.verify(msg, DEVICE_PUBLIC)


# ------------------------------------------------------------------------------- normative vectors


def test_vectors_payload_bytes():
    checked = 0
    for name, v in _reproducible("bundle"):
        assert bundle.payload(*_seal_args(v)) == bytes.fromhex(v["payload"]), name
        # the unsigned part of the bundle too (all but the 64 signature bytes)
        assert bytes.fromhex(v["bundle"])[:-64] == _unsigned(v), name
        assert bundle.bundle_hash(bytes.fromhex(v["bundle"])).hex() == v["bundle_hash"], name
        checked += 1
    assert checked > 0


def _unsigned(v):
    payload = bytes.fromhex(v["payload"])
    protected = cose.protected_kid(bytes.fromhex(v["key_id"]))
    return (
        bytes.fromhex("d284")
        + bytes([0x40 + len(protected)])
        + protected
        + b"\xa0"
        + _bstr_head(len(payload))
        + payload
        + b"\x58\x40"
    )


def _bstr_head(n):
    if n < 24:
        return bytes([0x40 + n])
    if n < 256:
        return bytes([0x58, n])
    return bytes([0x59, n >> 8, n & 0xFF])


def test_vectors_key_ids():
    from pinseal.identity import key_id

    for kind in ("bundle", "ack", "rejection"):
        for name, v in vectors.load(kind):
            assert key_id(bytes.fromhex(v["public_key"])).hex() == v["key_id"], name


async def test_vectors_bundles_byte_for_byte():
    checked = 0
    for name, v in _reproducible("bundle"):
        key = ed25519.SigningKey(bytes.fromhex(v["seed"]))
        assert key.public_key.hex() == v["public_key"], name
        data = await bundle.seal(key, bytes.fromhex(v["key_id"]), *_seal_args(v))
        assert data.hex() == v["bundle"], name
        assert bundle.bundle_hash(data).hex() == v["bundle_hash"], name
        await cose.verify(cose.parse(data), key.public_key)
        checked += 1
    assert checked > 0
