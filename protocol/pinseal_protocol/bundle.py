"""Bundles: N readings sealed in one COSE_Sign1 by the device's key (docs/protocol.md §3).

`seal` builds the bytes exactly as a device does (so host tests and vectors pin the device's output);
`verify_bundle` is the receiver's check chain, in the order of docs/protocol.md §8, ending in a
`Bundle` whose fields a gateway stores and whose `bundle_hash` names it in acks and proofs.
"""

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pinseal_protocol import cose, dcbor, keys, senml
from pinseal_protocol.errors import (
    InvalidPayload,
    TooLarge,
    UnknownDevice,
    UnsupportedVersion,
    WrongTopic,
)
from pinseal_protocol.senml import Reading

VERSION = 1
MAX_SIZE = 2048
PREV_SIZE = 16
ZERO_PREV = bytes(PREV_SIZE)
TIME_SOURCES = (0, 1, 2)  # none (seconds since boot), NTP, gateway ack time
MAX_UINT = 2**64 - 1

# Payload keys (§3).
K_VERSION, K_BOOT, K_SEQ, K_PREV, K_STATUS, K_TIME_SOURCE, K_READINGS = range(1, 8)

KeyResolver = Callable[[bytes], Ed25519PublicKey]
"""Maps a kid to the device's public key; raises UnknownDevice or Revoked (the gateway registry)."""


@dataclass(frozen=True)
class Status:
    """Device status when sealed; later versions may append fields (ignored here)."""

    battery_mv: int = 0
    rssi_dbm: int = 0
    uptime_s: int = 0
    dropped: int = 0
    reset_cause: int = 255

    def to_cbor(self) -> list[int]:
        return [self.battery_mv, self.rssi_dbm, self.uptime_s, self.dropped, self.reset_cause]


@dataclass(frozen=True)
class Bundle:
    """A verified bundle. `raw` are its exact bytes; `bundle_hash` = SHA-256(raw)."""

    kid: bytes
    boot: int
    seq: int
    n_readings: int
    last_seq: int
    prev: bytes
    status: Status
    time_source: int
    readings: tuple[Reading, ...]
    bundle_hash: bytes
    raw: bytes

    @property
    def link(self) -> bytes:
        """What the next bundle's `prev` holds: the first 16 bytes of the bundle hash."""
        return self.bundle_hash[:PREV_SIZE]


def bundle_hash(data: bytes) -> bytes:
    """SHA-256 over the complete bundle bytes (the tagged COSE_Sign1 as sent)."""
    return hashlib.sha256(data).digest()


def link_of(data: bytes) -> bytes:
    """The `prev` value of the bundle that follows `data`."""
    return bundle_hash(data)[:PREV_SIZE]


def payload_map(
    *,
    boot: int,
    seq: int,
    prev: bytes,
    status: Status,
    time_source: int,
    readings: Sequence[Reading],
    extra: Mapping[int, Any] | None = None,
) -> dict[int, Any]:
    """The bundle payload as a CBOR-ready map (`extra`: further keys, for forward-compatibility tests)."""
    if len(prev) != PREV_SIZE:
        raise ValueError("prev is 16 bytes")
    if time_source not in TIME_SOURCES:
        raise ValueError("time source is 0, 1 or 2")
    payload: dict[int, Any] = {
        K_VERSION: VERSION,
        K_BOOT: boot,
        K_SEQ: seq,
        K_PREV: prev,
        K_STATUS: status.to_cbor(),
        K_TIME_SOURCE: time_source,
        K_READINGS: senml.encode_pack(readings),
    }
    payload.update(extra or {})
    return payload


def protected_header(kid: bytes) -> dict[int, Any]:
    """The protected header of every pinseal message: alg EdDSA and the signer's key id."""
    return {cose.HEADER_ALG: cose.ALG_EDDSA, cose.HEADER_KID: kid}


def seal_payload(private_key: cose.Signer, kid: bytes, payload: bytes) -> bytes:
    """Sign already-encoded payload bytes into a bundle (vectors use this for crafted payloads)."""
    return cose.sign1(payload, private_key, protected_header(kid))


def seal(
    private_key: Ed25519PrivateKey,
    *,
    boot: int,
    seq: int,
    prev: bytes,
    status: Status,
    time_source: int,
    readings: Sequence[Reading],
) -> bytes:
    """The bundle bytes a device produces for these readings (deterministic: Ed25519 is)."""
    payload = payload_map(
        boot=boot, seq=seq, prev=prev, status=status, time_source=time_source, readings=readings
    )
    kid = keys.key_id(keys.public_key_bytes(private_key))
    return seal_payload(private_key, kid, dcbor.encode(payload))


def verify_bundle(
    data: bytes,
    key: Ed25519PublicKey | KeyResolver,
    *,
    topic_kid: bytes | None = None,
) -> Bundle:
    """Check a received bundle end to end and return its fields; raises a `RejectedMessage`.

    `key` is the device's public key or a registry lookup by kid; `topic_kid` the key id in the MQTT
    topic the bundle arrived on, if any.
    """
    data = bytes(data)
    if len(data) > MAX_SIZE:
        raise TooLarge(f"{len(data)} bytes > {MAX_SIZE}")
    message = cose.decode_sign1(data)
    kid = cose.pinseal_kid(message)
    if topic_kid is not None and kid != topic_kid:
        raise WrongTopic(f"kid {kid.hex()} arrived on the topic of {topic_kid.hex()}")
    public_key = _resolve(key, kid)
    cose.verify_sign1(message, public_key)
    payload = dcbor.decode(message.payload)
    return _parse_payload(payload, kid, data)


def _resolve(key: Ed25519PublicKey | KeyResolver, kid: bytes) -> Ed25519PublicKey:
    if isinstance(key, Ed25519PublicKey):
        if keys.key_id(key) != kid:
            raise UnknownDevice(f"kid {kid.hex()} is not the expected key")
        return key
    return key(kid)


def int_fields(payload: Any) -> dict[int, Any]:
    """The integer-keyed entries of a payload map (other keys are unknown, hence ignored)."""
    if not isinstance(payload, Mapping):
        raise InvalidPayload("payload must be a map")
    return {k: v for k, v in payload.items() if dcbor.is_int(k)}


def check_version(fields: Mapping[int, Any]) -> None:
    """Version first: nothing else of a version we do not implement is read (§7)."""
    if K_VERSION not in fields:
        raise InvalidPayload("payload version (key 1) missing")
    version = fields[K_VERSION]
    if not dcbor.is_int(version) or version != VERSION:
        raise UnsupportedVersion(f"payload version {version!r}")


def _parse_payload(payload: Any, kid: bytes, data: bytes) -> Bundle:
    fields = int_fields(payload)
    check_version(fields)
    for key in range(K_BOOT, K_READINGS + 1):
        if key not in fields:
            raise InvalidPayload(f"payload key {key} missing")
    boot, seq, prev = fields[K_BOOT], fields[K_SEQ], fields[K_PREV]
    if not dcbor.is_uint(boot):
        raise InvalidPayload("boot must be an unsigned integer")
    if not dcbor.is_uint(seq):
        raise InvalidPayload("seq must be an unsigned integer")
    if not isinstance(prev, bytes) or len(prev) != PREV_SIZE:
        raise InvalidPayload("prev must be a 16-byte string")
    status = _status(fields[K_STATUS])
    time_source = fields[K_TIME_SOURCE]
    if not dcbor.is_int(time_source) or time_source not in TIME_SOURCES:
        raise InvalidPayload(f"time source {time_source!r} is not 0, 1 or 2")
    readings = senml.parse_pack(fields[K_READINGS])
    last_seq = seq + len(readings) - 1
    if last_seq > MAX_UINT:
        raise InvalidPayload("sequence numbers overflow 64 bits")
    return Bundle(
        kid=kid,
        boot=boot,
        seq=seq,
        n_readings=len(readings),
        last_seq=last_seq,
        prev=prev,
        status=status,
        time_source=time_source,
        readings=readings,
        bundle_hash=bundle_hash(data),
        raw=data,
    )


def _status(raw: Any) -> Status:
    if not isinstance(raw, list) or len(raw) < 5:
        raise InvalidPayload("status must be an array of at least 5 integers")
    battery, rssi, uptime, dropped, reset_cause = raw[:5]
    if not all(dcbor.is_uint(v) for v in (battery, uptime, dropped, reset_cause)) or not dcbor.is_int(rssi):
        raise InvalidPayload("status fields must be integers (rssi signed, the others unsigned)")
    return Status(battery, rssi, uptime, dropped, reset_cause)
