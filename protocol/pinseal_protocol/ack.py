"""Acks: the gateway's signed receipt for a durably committed bundle (docs/protocol.md §5).

Signed by the gateway's key so a device can trust the time in it (time source 2); `device` names the
device the ack is for, so an ack cannot be replayed to another device.
"""

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pinseal_protocol import cose, dcbor, keys
from pinseal_protocol.bundle import MAX_SIZE, VERSION, check_version, int_fields, protected_header
from pinseal_protocol.errors import InvalidPayload, TooLarge, UnknownDevice, WrongTopic

K_VERSION, K_DEVICE, K_SEQ, K_BUNDLE, K_TIME = range(1, 6)


@dataclass(frozen=True)
class Ack:
    """A verified ack. `kid` is the gateway's key id, `device` the device's."""

    kid: bytes
    device: bytes
    seq: int
    bundle_hash: bytes
    time: int
    raw: bytes

    def covers(self, last_seq: int) -> bool:
        """Whether this ack lets a device drop a bundle whose last reading is `last_seq` (§5)."""
        return self.seq >= last_seq


def payload_map(*, device: bytes, seq: int, bundle_hash: bytes, time: int) -> dict[int, Any]:
    """The ack payload as a CBOR-ready map."""
    if len(device) != 16 or len(bundle_hash) != 32:
        raise ValueError("device is a 16-byte key id, bundle a 32-byte SHA-256")
    return {K_VERSION: VERSION, K_DEVICE: device, K_SEQ: seq, K_BUNDLE: bundle_hash, K_TIME: time}


def sign_ack(
    gateway_key: Ed25519PrivateKey, *, device: bytes, seq: int, bundle_hash: bytes, time: int
) -> bytes:
    """The ack bytes the gateway publishes on the device's ack topic."""
    payload = dcbor.encode(payload_map(device=device, seq=seq, bundle_hash=bundle_hash, time=time))
    return sign_ack_payload(gateway_key, payload)


def sign_ack_payload(gateway_key: cose.Signer, payload: bytes, kid: bytes | None = None) -> bytes:
    """Sign encoded ack payload bytes (vectors use this for crafted payloads)."""
    if kid is None:
        assert isinstance(gateway_key, Ed25519PrivateKey)
        kid = keys.key_id(keys.public_key_bytes(gateway_key))
    return cose.sign1(payload, gateway_key, protected_header(kid))


def verified_fields(data: bytes, gateway_key: Ed25519PublicKey) -> tuple[bytes, dict[int, Any]]:
    """Size, COSE shape, the gateway's kid and signature, then the version: (gateway kid, payload
    fields). Shared by acks and signed rejections (`pinseal_protocol.rejection`), which differ only in
    their payload keys."""
    data = bytes(data)
    if len(data) > MAX_SIZE:
        raise TooLarge(f"{len(data)} bytes > {MAX_SIZE}")
    message = cose.decode_sign1(data)
    kid = cose.pinseal_kid(message)
    if kid != keys.key_id(gateway_key):
        raise UnknownDevice(f"ack signed by {kid.hex()}, not the provisioned gateway key")
    cose.verify_sign1(message, gateway_key)
    fields = int_fields(dcbor.decode(message.payload))
    check_version(fields)
    return kid, fields


def checked_device_and_hash(fields: dict[int, Any], device: bytes) -> tuple[bytes, bytes, int]:
    """(device, bundle hash, time) of a verified payload, typed, and addressed to `device`."""
    for key in (K_DEVICE, K_BUNDLE, K_TIME):
        if key not in fields:
            raise InvalidPayload(f"ack payload key {key} missing")
    ack_device, hash_, time = fields[K_DEVICE], fields[K_BUNDLE], fields[K_TIME]
    if not isinstance(ack_device, bytes) or len(ack_device) != 16:
        raise InvalidPayload("ack device must be a 16-byte key id")
    if not isinstance(hash_, bytes) or len(hash_) != 32:
        raise InvalidPayload("ack bundle must be a 32-byte SHA-256")
    if not dcbor.is_uint(time):
        raise InvalidPayload("ack time must be an unsigned integer")
    if ack_device != device:
        raise WrongTopic(f"ack is for device {ack_device.hex()}, not {device.hex()}")
    return ack_device, hash_, time


def verify_ack(data: bytes, gateway_key: Ed25519PublicKey, device: bytes) -> Ack:
    """Check an ack as a device does: gateway signature, version, fields, and that it is for `device`.

    A signed rejection (no key 3) is not an ack: `InvalidPayload` here, which is what a device that
    predates rejections makes of one. `pinseal_protocol.rejection.verify_reply` reads both."""
    kid, fields = verified_fields(data, gateway_key)
    return ack_from_fields(kid, fields, device, bytes(data))


def ack_from_fields(kid: bytes, fields: dict[int, Any], device: bytes, raw: bytes) -> Ack:
    """The Ack of verified payload fields (after `verified_fields`)."""
    if K_SEQ not in fields:
        raise InvalidPayload(f"ack payload key {K_SEQ} missing")
    seq = fields[K_SEQ]
    if not dcbor.is_uint(seq):
        raise InvalidPayload("ack seq must be an unsigned integer")
    ack_device, hash_, time = checked_device_and_hash(fields, device)
    return Ack(kid=kid, device=ack_device, seq=seq, bundle_hash=hash_, time=time, raw=raw)
