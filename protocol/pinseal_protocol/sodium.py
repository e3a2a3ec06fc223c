"""Ed25519 through libsodium (PyNaCl), for receivers' hot paths: about twice as fast as OpenSSL here.

`cryptography` (OpenSSL) stays the reference verifier of the protocol code; a gateway verifying
thousands of bundles per second uses this one on its fast path, and signs its acks with it. PyNaCl
calls release the GIL, so verification overlaps the gateway's Python work on the other core.

Signatures are deterministic (RFC 8032 §5.1.6), so `sign` returns exactly the bytes `cryptography`
would. `verify` agrees with `cryptography` on every Wycheproof Ed25519 case and every project vector
(protocol/tests/test_sodium.py); libsodium is stricter in three places, all outside what a device
running RFC 8032 with a real key ever produces:

- a public key of small order (no private key exists: with OpenSSL such a key "signs" anything with
  R = identity, S = 0): libsodium rejects every signature;
- a non-canonical public key encoding (y >= p): rejected;
- R of small order: the only one OpenSSL can accept with a prime-order key is the identity, which needs
  a signer who sets S = k*a on purpose (an honest signer's R = r*B is never the identity): rejected.

docs/protocol.md asks for Ed25519 per RFC 8032 §5.1.7; RFC 8032 leaves these checks to the verifier,
and a signature that proves nothing about its message is what the protocol wants refused. The
stricter side only ever refuses a bundle the reference would take, never the reverse, so what a
gateway using it forwards, the network's ingest (using `cryptography`) accepts too.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError

SIGNATURE_SIZE = 64
PUBLIC_KEY_SIZE = 32


def verify(public_key: bytes, signature: bytes, message: bytes) -> None:
    """Raises `cryptography`'s InvalidSignature (as `Ed25519PublicKey.verify` does) unless valid."""
    if len(signature) != SIGNATURE_SIZE or len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidSignature("an Ed25519 signature has 64 bytes and a public key 32")
    try:
        crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, ValueError) as exc:  # ValueError: libsodium's refusal of the key
        raise InvalidSignature(str(exc)) from None


class Signer:
    """Signs with a private key held by libsodium (its 64-byte seed||public secret key)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        _public, self._secret = crypto_sign_seed_keypair(key.private_bytes_raw())

    def sign(self, message: bytes) -> bytes:
        """The RFC 8032 signature: the same 64 bytes `Ed25519PrivateKey.sign` returns."""
        return crypto_sign(message, self._secret)[:SIGNATURE_SIZE]
