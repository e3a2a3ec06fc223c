"""Which 32-byte strings may be registered as Ed25519 public keys (issue 11 #8d)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_protocol import keys

# libsodium's blocklist (crypto_sign/ed25519/ref10/open.c) and Wycheproof eddsa_test.json's small-order
# public keys, with their sign-bit twins.
SMALL_ORDER = [
    "00" * 32,  # (x, 0): order 4
    "00" * 31 + "80",  # its negation
    "01" + "00" * 31,  # identity
    "ec" + "ff" * 30 + "7f",  # y = p - 1: order 2
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
]
NON_CANONICAL = [
    "ed" + "ff" * 30 + "7f",  # y = p (= 0)
    "ee" + "ff" * 30 + "7f",  # y = p + 1 (= 1)
    "01" + "00" * 30 + "80",  # identity with the sign bit set (x = 0)
    "ec" + "ff" * 30 + "ff",  # y = p - 1 with the sign bit set (x = 0)
    "ed" + "ff" * 30 + "ff",
    "ee" + "ff" * 30 + "ff",
]
NOT_ON_CURVE = ["02" + "00" * 31]


@pytest.mark.parametrize("public_hex", SMALL_ORDER)
def test_small_order_points_are_refused(public_hex):
    with pytest.raises(ValueError, match="small-order"):
        keys.check_public_key(bytes.fromhex(public_hex))


@pytest.mark.parametrize("public_hex", NON_CANONICAL)
def test_non_canonical_encodings_are_refused(public_hex):
    with pytest.raises(ValueError, match="canonical"):
        keys.check_public_key(bytes.fromhex(public_hex))


@pytest.mark.parametrize("public_hex", NOT_ON_CURVE)
def test_points_off_the_curve_are_refused(public_hex):
    with pytest.raises(ValueError, match="not a point"):
        keys.check_public_key(bytes.fromhex(public_hex))


def test_a_key_with_a_torsion_component_is_refused():
    """An honest key plus a point of order 8: on the curve, not small-order, still no signer's key."""
    honest = keys.public_key_bytes(Ed25519PrivateKey.from_private_bytes(bytes([3]) * 32))
    x, y = keys._decode_point(honest)
    tx, ty = keys._decode_point(bytes.fromhex(SMALL_ORDER[4]))
    p = keys._P
    big_x, big_y, big_z, _ = keys._add((x, y, 1, x * y % p), (tx, ty, 1, tx * ty % p))
    zi = pow(big_z, p - 2, p)
    ax, ay = big_x * zi % p, big_y * zi % p
    mixed = (ay | ((ax & 1) << 255)).to_bytes(32, "little")
    with pytest.raises(ValueError, match="prime-order subgroup"):
        keys.check_public_key(mixed)


def test_honest_keys_pass_and_wrong_lengths_are_named():
    for n in range(64):
        raw = keys.public_key_bytes(Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32))
        assert keys.check_public_key(raw) == raw
    with pytest.raises(ValueError, match="32 bytes"):
        keys.check_public_key(bytes(31))
