"""Bundles: N readings sealed in one COSE_Sign1 by the device's key (docs/protocol.md §3).

`seal` builds the bytes exactly as a device does (so host tests and vectors pin the device's output);
`verify_bundle` is the receiver's check chain, in the order of docs/protocol.md §8, ending in a
`Bundle` whose fields a gateway stores and whose `bundle_hash` names it in acks and proofs.

`verify_bundle` reads the one layout devices write with `fastbundle.parse` (one pass, no generic
decoding) and everything else with the generic strict decoder; both give the same `Bundle`, readings
included as `Row`s, so a receiver never chooses between them.
"""

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pinseal_protocol import cose, dcbor, keys, senml, sodium
from pinseal_protocol.dcbor import DecimalFraction
from pinseal_protocol.errors import (
    BadSignature,
    InvalidPayload,
    TooLarge,
    UnknownDevice,
    UnsupportedVersion,
    WrongTopic,
)
from pinseal_protocol.senml import Reading, Record

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

RawKeyResolver = Callable[[bytes], bytes]
"""Like `KeyResolver`, the raw 32-byte public key: `verify_bundle` then checks device-layout bundles
with libsodium (`pinseal_protocol.sodium`) instead of `cryptography`."""

Row = tuple[bytes, bytes, int, int, str, str | None, str | None, str | None]
"""One per SenML record: (bundle hash, kid, the reading's seq, its time, name, unit, value text, error
string), the value text being `str()` of the int or DecimalFraction as `str(Record.value)` gives it:
the row a gateway stores, built while parsing because building it afterwards costs as much again."""


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


@dataclass(slots=True)
class Bundle:
    """A bundle's fields, with its readings as `Row`s. `raw` are its exact bytes; `bundle_hash` =
    SHA-256(raw). Returned verified by `verify_bundle`; `fastbundle.parse` returns one unverified, with
    `signed` (the COSE Sig_structure) and `signature` for the caller to check before trusting it.

    Not frozen, though nothing changes it after parsing: one is built per bundle, twice in a gateway
    (verify worker and gateway process), and a frozen dataclass's __init__ (object.__setattr__ per
    field) took 2.5 us of the 0.4 us a plain slots __init__ takes.
    """

    kid: bytes
    boot: int
    seq: int
    n_readings: int
    last_seq: int
    prev: bytes
    status: Status
    time_source: int
    rows: tuple[Row, ...]
    min_time: int
    max_time: int
    bundle_hash: bytes
    raw: bytes
    signed: bytes = field(default=b"", compare=False, repr=False)
    signature: bytes = field(default=b"", compare=False, repr=False)
    _readings: tuple[Reading, ...] | None = field(default=None, compare=False, repr=False)

    @property
    def link(self) -> bytes:
        """What the next bundle's `prev` holds: the first 16 bytes of the bundle hash."""
        return self.bundle_hash[:PREV_SIZE]

    @property
    def readings(self) -> tuple[Reading, ...]:
        """The readings as SenML `Reading`s (built from `rows` on first use; the hot path uses rows)."""
        if self._readings is None:
            self._readings = _readings_of(self.rows, self.seq)
        return self._readings


def _readings_of(rows: Sequence[Row], first_seq: int) -> tuple[Reading, ...]:
    readings: list[Reading] = []
    current: list[Record] = []
    index = -1
    time = 0
    for _hash, _kid, row_seq, row_time, name, unit, value, error in rows:
        row_index = row_seq - first_seq
        if row_index != index:
            if current:
                readings.append(Reading(time, tuple(current)))
            index, time, current = row_index, row_time, []
        if error is not None:
            current.append(Record(name, unit, string_value=error))
        else:
            assert value is not None
            current.append(Record(name, unit, value=_value_of(value)))
    readings.append(Reading(time, tuple(current)))
    return tuple(readings)


def _value_of(text: str) -> int | DecimalFraction:
    if "e" in text:
        mantissa, exponent = text.split("e")
        return DecimalFraction(int(exponent), int(mantissa))
    return int(text)


def rows_of(readings: Sequence[Reading], bundle_hash: bytes, kid: bytes, seq: int) -> tuple[Row, ...]:
    """The `Row`s of decoded readings (one per SenML record)."""
    return tuple(
        (
            bundle_hash,
            kid,
            seq + index,
            reading.time,
            record.name,
            record.unit,
            None if record.value is None else str(record.value),
            record.string_value,
        )
        for index, reading in enumerate(readings)
        for record in reading.records
    )


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
    raw_key: RawKeyResolver | None = None,
) -> Bundle:
    """Check a received bundle end to end and return its fields; raises a `RejectedMessage`.

    `key` is the device's public key or a registry lookup by kid; `topic_kid` the key id in the MQTT
    topic the bundle arrived on, if any. With `raw_key` (the same lookup, raw key bytes), a bundle in
    the device layout is checked with libsodium: twice OpenSSL's speed, GIL released, and stricter only
    on keys and signatures no honest signer produces (see `pinseal_protocol.sodium`).
    """
    data = bytes(data)
    fast = fastbundle.parse(data)
    if fast is not None:
        return _verify_parsed(fast, key, topic_kid, raw_key)
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


def _verify_parsed(
    bundle: Bundle,
    key: Ed25519PublicKey | KeyResolver,
    topic_kid: bytes | None,
    raw_key: RawKeyResolver | None,
) -> Bundle:
    """The rest of the check chain for a bundle `fastbundle.parse` read: topic, key, signature.

    The fast path accepted only bytes every structural and encoding check passes, so these are the
    only checks left, in the same order as the generic path (docs/protocol.md §8).
    """
    kid = bundle.kid
    if topic_kid is not None and kid != topic_kid:
        raise WrongTopic(f"kid {kid.hex()} arrived on the topic of {topic_kid.hex()}")
    try:
        if raw_key is not None:
            sodium.verify(raw_key(kid), bundle.signature, bundle.signed)
        else:
            _resolve(key, kid).verify(bundle.signature, bundle.signed)
    except InvalidSignature as exc:
        raise BadSignature("Ed25519 signature does not verify") from exc
    return bundle


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
    digest = bundle_hash(data)
    times = [reading.time for reading in readings]
    return Bundle(
        kid=kid,
        boot=boot,
        seq=seq,
        n_readings=len(readings),
        last_seq=last_seq,
        prev=prev,
        status=status,
        time_source=time_source,
        rows=rows_of(readings, digest, kid, seq),
        min_time=min(times),
        max_time=max(times),
        bundle_hash=digest,
        raw=data,
        _readings=readings,
    )


def _status(raw: Any) -> Status:
    if not isinstance(raw, list) or len(raw) < 5:
        raise InvalidPayload("status must be an array of at least 5 integers")
    battery, rssi, uptime, dropped, reset_cause = raw[:5]
    if not all(dcbor.is_uint(v) for v in (battery, uptime, dropped, reset_cause)) or not dcbor.is_int(rssi):
        raise InvalidPayload("status fields must be integers (rssi signed, the others unsigned)")
    return Status(battery, rssi, uptime, dropped, reset_cause)


from pinseal_protocol import fastbundle  # noqa: E402  (it builds this module's Bundle)
