"""libsodium Ed25519 (`pinseal_protocol.sodium`) against `cryptography`: the same verdict on every
Wycheproof case and project vector, the same signatures, and the three documented stricter cases."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from pinseal_devkit.vectors import writer
from pinseal_protocol import cose, sodium
from pinseal_protocol.errors import RejectedMessage

WYCHEPROOF = Path(__file__).resolve().parents[1] / "vectors" / "third_party" / "wycheproof"
L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point (RFC 8032 §5.1)
P = 2**255 - 19
IDENTITY = bytes([1]) + bytes(31)  # the neutral point's encoding: y = 1, x = 0


def reference_valid(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def sodium_valid(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        sodium.verify(public_key, signature, message)
    except InvalidSignature:
        return False
    return True


def _wycheproof_cases() -> list[tuple[str, str, str, str, str]]:
    data = json.loads((WYCHEPROOF / "ed25519_test.json").read_text())
    return [
        (group["publicKey"]["pk"], t["msg"], t["sig"], t["result"], f"tc{t['tcId']}")
        for group in data["testGroups"]
        for t in group["tests"]
    ]


@pytest.mark.parametrize(("pk", "msg", "sig", "result", "tc"), _wycheproof_cases())
def test_wycheproof_same_verdict_as_cryptography(pk: str, msg: str, sig: str, result: str, tc: str) -> None:
    args = bytes.fromhex(pk), bytes.fromhex(sig), bytes.fromhex(msg)
    assert sodium_valid(*args) == reference_valid(*args) == (result == "valid"), tc


def _vector_signatures() -> list[tuple[str, bytes, bytes, bytes]]:
    """(name, public key, signature, signed bytes) of every project vector that decodes as a COSE_Sign1."""
    cases = []
    for name, vector in writer.generate().items():
        data = bytes.fromhex(vector[vector["kind"]])
        try:
            message = cose.decode_sign1(data)
        except RejectedMessage:
            continue
        signed = cose.sig_structure(message.protected_bytes, message.payload)
        cases.append((name, bytes.fromhex(vector["public_key"]), message.signature, signed))
    return cases


def test_project_vectors_same_verdict_as_cryptography() -> None:
    cases = _vector_signatures()
    assert len(cases) > 20
    verdicts = {name: reference_valid(pk, sig, signed) for name, pk, sig, signed in cases}
    assert any(verdicts.values()) and not all(verdicts.values())
    for name, pk, sig, signed in cases:
        assert sodium_valid(pk, sig, signed) == verdicts[name], name


@settings(max_examples=100, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300))
def test_signatures_are_the_reference_bytes(seed: bytes, message: bytes) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    signature = sodium.Signer(key).sign(message)
    assert signature == key.sign(message)
    assert sodium_valid(key.public_key().public_bytes_raw(), signature, message)


def _scalar(seed: bytes) -> int:
    digest = bytearray(hashlib.sha512(seed).digest()[:32])
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    return int.from_bytes(digest, "little")


def test_stricter_small_order_public_key() -> None:
    """The identity as public key 'signs' every message with R = identity, S = 0 under OpenSSL."""
    forged = IDENTITY + bytes(32)
    assert reference_valid(IDENTITY, forged, b"any message")
    assert not sodium_valid(IDENTITY, forged, b"any message")


def test_stricter_non_canonical_public_key() -> None:
    """y = p + 1 encodes the identity non-canonically: OpenSSL reduces it, libsodium refuses it."""
    non_canonical = (P + 1).to_bytes(32, "little")
    forged = IDENTITY + bytes(32)
    assert reference_valid(non_canonical, forged, b"any message")
    assert not sodium_valid(non_canonical, forged, b"any message")


def test_stricter_identity_r() -> None:
    """R = identity, S = k*a: valid for OpenSSL, but only a key holder choosing it on purpose can make it."""
    seed = bytes(range(32))
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = key.public_key().public_bytes_raw()
    message = b"a bundle"
    k = int.from_bytes(hashlib.sha512(IDENTITY + public + message).digest(), "little") % L
    signature = IDENTITY + (k * _scalar(seed) % L).to_bytes(32, "little")
    assert reference_valid(public, signature, message)
    assert not sodium_valid(public, signature, message)


def test_wrong_sizes_are_invalid_not_errors() -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    signature = key.sign(b"m")
    assert not sodium_valid(public, signature[:63], b"m")
    assert not sodium_valid(public[:31], signature, b"m")
    assert not sodium_valid(public, signature + b"\0", b"m")
