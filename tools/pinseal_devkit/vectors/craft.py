"""Messages made by hand: sealed with the test device's key, or assembled from pre-encoded parts.

A rejected vector must carry exactly one defect, so most are a valid message with one thing changed;
these are the few ways of changing one thing that the codec itself would never do.
"""

from collections.abc import Sequence
from typing import Any

import cbor2

from pinseal_devkit.test_keys import DEVICE_KEY, DEVICE_KID
from pinseal_protocol import bundle, dcbor
from pinseal_protocol.dcbor import head


def seal(fields: dict[str, Any]) -> bytes:
    """What the test device seals from `fields` (exactly what a correct device makes)."""
    return bundle.seal(DEVICE_KEY, **fields)


def seal_map(payload: dict[int, Any]) -> bytes:
    """A payload map of our choosing, deterministically encoded and signed by the test device."""
    return bundle.seal_payload(DEVICE_KEY, DEVICE_KID, dcbor.encode(payload))


def seal_bytes(payload: bytes) -> bytes:
    """Payload bytes of our choosing (perhaps not deterministic), signed by the test device."""
    return bundle.seal_payload(DEVICE_KEY, DEVICE_KID, payload)


def raw_map(pairs: Sequence[tuple[Any, bytes]]) -> bytes:
    """A map from keys and pre-encoded values, in the order given (for non-deterministic vectors)."""
    return head(5, len(pairs)) + b"".join(dcbor.encode(k) + v for k, v in pairs)


def envelope(protected: bytes, unprotected: bytes, payload: bytes, signature: bytes) -> bytes:
    """A tagged COSE_Sign1 from pre-encoded parts."""
    return b"\xd2\x84" + protected + unprotected + payload + signature


def parts(message: bytes) -> list[Any]:
    """[protected, unprotected, payload, signature] of a tagged COSE_Sign1."""
    return list(cbor2.loads(message, semantic_decoders={18: lambda v, _i: v}))


def is_sign1(data: bytes) -> bool:
    """True if `data` decodes to an array of at least three parts (a payload to show)."""
    try:
        value = parts(data)
    except Exception:
        return False
    return isinstance(value, list) and len(value) >= 3


def flip_signature_bit(data: bytes) -> bytes:
    """Flip the lowest bit of the signature's first byte (the signature is the last 64 bytes)."""
    out = bytearray(data)
    out[-64] ^= 0x01
    return bytes(out)


def padded(fields: dict[str, Any], size: int) -> bytes:
    """A valid bundle of exactly `size` bytes: `fields` plus an unknown key 8 holding zero bytes."""
    for pad in range(size):
        data = seal_map(bundle.payload_map(**fields, extra={8: bytes(pad)}))
        if len(data) == size:
            return data
    raise ValueError(f"no padding gives {size} bytes")
