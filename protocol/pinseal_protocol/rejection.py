"""Signed rejections: the gateway tells a device why it refused a bundle (docs/protocol.md §5.1).

Without them a device whose bundle is refused for good (a conflict or replay after its counter went
back, a bundle of a key it no longer holds) resends that bundle forever, and every later reading waits
behind it. A rejection is signed by the gateway key like an ack and travels on the ack topic, but its
payload has no key 3 (seq): a device that predates rejections reads it as an invalid ack and ignores it,
so it can never be mistaken for a receipt.
"""

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pinseal_protocol import ack, dcbor
from pinseal_protocol.bundle import VERSION
from pinseal_protocol.errors import InvalidPayload

K_REASON, K_NEXT = 6, 7

NOTIFIED_REASONS = frozenset({"conflict", "replayed", "wrong_topic"})
"""The reasons a gateway signs a rejection for: the ones no resend can cure (§5.1). For the others
(a bad signature, an unknown key, a malformed message) the sender is not shown to be the device, so
the gateway says nothing: the same bytes were never going to be accepted either way."""

MAX_REASON_LENGTH = 32


@dataclass(frozen=True)
class RejectionNotice:
    """A verified rejection. `next_seq`: the lowest sequence number above every one the gateway stores
    for the device (0 if it stores none): where a device's counter must continue to be accepted."""

    kid: bytes
    device: bytes
    bundle_hash: bytes
    time: int
    reason: str
    next_seq: int
    raw: bytes


def payload_map(
    *, device: bytes, bundle_hash: bytes, time: int, reason: str, next_seq: int
) -> dict[int, Any]:
    """The rejection payload as a CBOR-ready map."""
    if len(device) != 16 or len(bundle_hash) != 32:
        raise ValueError("device is a 16-byte key id, bundle a 32-byte SHA-256")
    if not reason or len(reason) > MAX_REASON_LENGTH:
        raise ValueError(f"reason is 1 to {MAX_REASON_LENGTH} characters")
    return {
        ack.K_VERSION: VERSION,
        ack.K_DEVICE: device,
        ack.K_BUNDLE: bundle_hash,
        ack.K_TIME: time,
        K_REASON: reason,
        K_NEXT: next_seq,
    }


def encode_payload(*, device: bytes, bundle_hash: bytes, time: int, reason: str, next_seq: int) -> bytes:
    """The deterministic CBOR of the payload (what the gateway's fast signer signs)."""
    return dcbor.encode(
        payload_map(device=device, bundle_hash=bundle_hash, time=time, reason=reason, next_seq=next_seq)
    )


def sign_rejection(
    gateway_key: Ed25519PrivateKey,
    *,
    device: bytes,
    bundle_hash: bytes,
    time: int,
    reason: str,
    next_seq: int,
) -> bytes:
    """The rejection bytes the gateway publishes on the device's ack topic."""
    payload = encode_payload(
        device=device, bundle_hash=bundle_hash, time=time, reason=reason, next_seq=next_seq
    )
    return ack.sign_ack_payload(gateway_key, payload)


def verify_reply(data: bytes, gateway_key: Ed25519PublicKey, device: bytes) -> ack.Ack | RejectionNotice:
    """What a device makes of a message on its ack topic: an ack, or a rejection (key 6 present).

    A payload with both a seq (3) and a reason (6) is refused: it would be a receipt to old devices
    and a refusal to new ones."""
    kid, fields = ack.verified_fields(data, gateway_key)
    if K_REASON not in fields:
        return ack.ack_from_fields(kid, fields, device, bytes(data))
    if ack.K_SEQ in fields:
        raise InvalidPayload("a rejection carries no seq (key 3)")
    reason, next_seq = fields[K_REASON], fields.get(K_NEXT)
    if not isinstance(reason, str) or not 0 < len(reason) <= MAX_REASON_LENGTH:
        raise InvalidPayload(f"rejection reason must be text of 1 to {MAX_REASON_LENGTH} characters")
    if not dcbor.is_uint(next_seq):
        raise InvalidPayload("rejection next seq (key 7) must be an unsigned integer")
    rejected_device, hash_, time = ack.checked_device_and_hash(fields, device)
    return RejectionNotice(
        kid=kid,
        device=rejected_device,
        bundle_hash=hash_,
        time=time,
        reason=reason,
        next_seq=next_seq,
        raw=bytes(data),
    )
