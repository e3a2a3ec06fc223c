"""COSE_Sign1 (RFC 9052 §4.2, §4.4) with EdDSA over Ed25519 (RFC 8032 §5.1), nothing else.

Generic on purpose: it verifies any deterministically encoded, tagged COSE_Sign1 with alg EdDSA,
including third-party examples. The pinseal-specific header rules (exactly alg and kid, empty
unprotected map) live in `bundle` and `ack`.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pinseal_protocol import dcbor
from pinseal_protocol.errors import (
    BadSignature,
    InvalidStructure,
    UnsupportedAlgorithm,
    WrongTag,
)

TAG_COSE_SIGN1 = 18
HEADER_ALG = 1
HEADER_CRIT = 2
HEADER_KID = 4
ALG_EDDSA = -8
ED25519_SIGNATURE_SIZE = 64
ED448_SIGNATURE_SIZE = 114


class Signer(Protocol):
    """Anything with an RFC 8032 `sign(message) -> signature` (Ed25519, or Ed448 for negative tests)."""

    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class Sign1:
    """A decoded COSE_Sign1; `protected_bytes` are kept because the signature covers them verbatim."""

    protected_bytes: bytes
    protected: Mapping[Any, Any]
    unprotected: Mapping[Any, Any]
    payload: bytes
    signature: bytes

    def header(self, label: int) -> Any:
        """A protected header parameter by integer label (None if absent; bool keys never match)."""
        for key, value in self.protected.items():
            if dcbor.is_int(key) and key == label:
                return value
        return None


def sig_structure(protected_bytes: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """The bytes an EdDSA COSE_Sign1 signs: `["Signature1", protected, external_aad, payload]`."""
    return dcbor.encode(["Signature1", protected_bytes, external_aad, payload])


def sign1(
    payload: bytes,
    signer: Signer,
    protected: Mapping[Any, Any] | bytes,
    unprotected: Mapping[Any, Any] | None = None,
) -> bytes:
    """A tagged COSE_Sign1 over `payload`. `protected` may be given pre-encoded (bytes) for tests."""
    protected_bytes = protected if isinstance(protected, bytes) else dcbor.encode(protected)
    signature = signer.sign(sig_structure(protected_bytes, payload))
    message = [protected_bytes, dict(unprotected or {}), payload, signature]
    return dcbor.encode(cbor2.CBORTag(TAG_COSE_SIGN1, message))


def decode_sign1(data: bytes) -> Sign1:
    """Strictly decode a tagged COSE_Sign1 (no signature check): shape and deterministic bytes."""
    value = dcbor.decode(data)
    if not isinstance(value, cbor2.CBORTag) or value.tag != TAG_COSE_SIGN1:
        raise WrongTag("expected CBOR tag 18 (COSE_Sign1)")
    body = value.value
    if not isinstance(body, list) or len(body) != 4:
        raise InvalidStructure("COSE_Sign1 is an array of 4 elements")
    protected_bytes, unprotected, payload, signature = body
    if not isinstance(protected_bytes, bytes):
        raise InvalidStructure("protected header must be a byte string")
    if not isinstance(unprotected, Mapping):
        raise InvalidStructure("unprotected header must be a map")
    if not isinstance(payload, bytes):
        raise InvalidStructure("payload must be an attached byte string")
    if not isinstance(signature, bytes):
        raise InvalidStructure("signature must be a byte string")
    # RFC 9052 §3: a zero-length protected bstr stands for the empty map.
    protected = dcbor.decode(protected_bytes) if protected_bytes else {}
    if not isinstance(protected, Mapping):
        raise InvalidStructure("protected header must encode a map")
    return Sign1(protected_bytes, protected, unprotected, payload, signature)


def check_algorithm(message: Sign1) -> None:
    """EdDSA over Ed25519 only: alg -8 in the protected header, no crit, a 64-byte signature.

    alg -8 names EdDSA without a curve; an Ed448 signature (114 bytes) is therefore an unsupported
    algorithm rather than a merely bad signature.
    """
    alg = message.header(HEADER_ALG)
    if not dcbor.is_int(alg) or alg != ALG_EDDSA:
        raise UnsupportedAlgorithm(f"alg {alg!r} is not EdDSA ({ALG_EDDSA})")
    if message.header(HEADER_CRIT) is not None:
        raise UnsupportedAlgorithm("crit header parameters are not supported")
    if len(message.signature) == ED448_SIGNATURE_SIZE:
        raise UnsupportedAlgorithm("Ed448-sized signature; EdDSA here means Ed25519")
    if len(message.signature) != ED25519_SIGNATURE_SIZE:
        raise InvalidStructure(f"an Ed25519 signature has 64 bytes, not {len(message.signature)}")


def verify_sign1(message: Sign1, public_key: Ed25519PublicKey) -> None:
    """Check algorithm and signature; raises a `RejectedMessage` subclass, returns None if valid."""
    check_algorithm(message)
    try:
        public_key.verify(message.signature, sig_structure(message.protected_bytes, message.payload))
    except InvalidSignature as exc:
        raise BadSignature("Ed25519 signature does not verify") from exc


def pinseal_kid(message: Sign1) -> bytes:
    """pinseal's header profile (docs/protocol.md §3, §7): returns the signer's 16-byte key id.

    Protected header: exactly alg (-8) and a 16-byte kid; unprotected header: the empty map, so
    nothing outside the signature can matter; signature: 64 bytes.
    """
    check_algorithm(message)
    kid = message.header(HEADER_KID)
    if not isinstance(kid, bytes) or len(kid) != 16:
        raise InvalidStructure("protected header needs a 16-byte kid")
    if len(message.protected) != 2:
        raise InvalidStructure("protected header holds exactly alg and kid")
    if message.unprotected:
        raise InvalidStructure("unprotected header must be the empty map")
    return kid
