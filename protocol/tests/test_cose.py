"""Generic COSE_Sign1 against the COSE WG examples, and Ed25519 against Wycheproof."""

import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from vector_files import THIRD_PARTY

from pinseal_protocol import cose, keys
from pinseal_protocol.errors import InvalidStructure, RejectedMessage, UnsupportedAlgorithm, WrongTag

COSE_WG = THIRD_PARTY / "cose-wg"


def _example(name: str) -> dict:
    return json.loads((COSE_WG / name).read_text())


def test_cose_wg_eddsa_sig_01_verifies_and_resigns_exactly() -> None:
    example = _example("eddsa-sig-01.json")
    key = example["input"]["sign0"]["key"]
    message = bytes.fromhex(example["output"]["cbor"])
    decoded = cose.decode_sign1(message)
    assert decoded.payload == example["input"]["plaintext"].encode()
    assert (
        cose.sig_structure(decoded.protected_bytes, decoded.payload).hex().upper()
        == example["intermediates"]["ToBeSign_hex"]
    )
    cose.verify_sign1(decoded, keys.load_public_key(bytes.fromhex(key["x_hex"])))
    private = keys.load_private_key(bytes.fromhex(key["d_hex"]))
    assert keys.public_key_bytes(private).hex() == key["x_hex"]
    resigned = cose.sign1(decoded.payload, private, {1: -8, 3: 0}, {4: key["kid"].encode()})
    assert resigned == message


def test_cose_wg_eddsa_sig_02_ed448_is_unsupported() -> None:
    example = _example("eddsa-sig-02.json")
    decoded = cose.decode_sign1(bytes.fromhex(example["output"]["cbor"]))
    some_ed25519_key = keys.load_public_key(bytes(range(32)))
    with pytest.raises(UnsupportedAlgorithm):
        cose.verify_sign1(decoded, some_ed25519_key)
    with pytest.raises(ValueError):
        keys.load_public_key(bytes.fromhex(example["input"]["sign0"]["key"]["x_hex"]))


def test_decode_sign1_shape_errors() -> None:
    from pinseal_protocol import dcbor

    with pytest.raises(WrongTag):
        cose.decode_sign1(dcbor.encode([b"", {}, b"", b""]))
    with pytest.raises(InvalidStructure):
        cose.decode_sign1(bytes.fromhex("d283400040"))  # 18([h'', 0, h'']) - 3 elements
    with pytest.raises(InvalidStructure):
        cose.decode_sign1(bytes.fromhex("d28440a0f640"))  # detached payload (nil)
    with pytest.raises(InvalidStructure):
        cose.decode_sign1(bytes.fromhex("d2844101a04040"))  # protected header encodes 1, not a map
    with pytest.raises(RejectedMessage):
        cose.decode_sign1(b"")


def _wycheproof_cases() -> list[tuple[str, str, str, str, str]]:
    data = json.loads((THIRD_PARTY / "wycheproof" / "ed25519_test.json").read_text())
    return [
        (group["publicKey"]["pk"], t["msg"], t["sig"], t["result"], f"tc{t['tcId']}")
        for group in data["testGroups"]
        for t in group["tests"]
    ]


@pytest.mark.parametrize(("pk", "msg", "sig", "result", "tc"), _wycheproof_cases())
def test_wycheproof_ed25519(pk: str, msg: str, sig: str, result: str, tc: str) -> None:
    """`cryptography` (the host verifier) agrees with Wycheproof, malleability cases included."""
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(pk))
    try:
        key.verify(bytes.fromhex(sig), bytes.fromhex(msg))
        valid = True
    except InvalidSignature:
        valid = False
    assert valid == (result == "valid"), tc
