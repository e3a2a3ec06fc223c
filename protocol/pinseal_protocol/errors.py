"""Rejection reasons of docs/protocol.md §8, one exception class each.

Every receiver (gateway, network ingest, tests) reports a rejected message with exactly one reason
string; catching `RejectedMessage` and reading `.reason` is all a caller needs, and tests can assert
the precise class a vector expects.
"""

from typing import ClassVar


class RejectedMessage(Exception):
    """A message that a receiver must not accept; `reason` is the wire-level reason string."""

    reason: ClassVar[str] = "rejected"

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)
        self.detail = detail


class Malformed(RejectedMessage):
    """Not well-formed CBOR, truncated, or trailing bytes after the message."""

    reason = "malformed"


class NonDeterministic(RejectedMessage):
    """Well-formed CBOR that is not its own deterministic encoding (§2), or holds a float."""

    reason = "non_deterministic"


class WrongTag(RejectedMessage):
    """Not a CBOR tag 18 (COSE_Sign1)."""

    reason = "wrong_tag"


class InvalidStructure(RejectedMessage):
    """A COSE_Sign1 of the wrong shape: element count or types, bad header, signature size."""

    reason = "invalid_structure"


class UnsupportedAlgorithm(RejectedMessage):
    """alg is not EdDSA over Ed25519 (-8), or the protected header carries crit."""

    reason = "unsupported_algorithm"


class BadSignature(RejectedMessage):
    """The Ed25519 signature does not verify against the registered key."""

    reason = "bad_signature"


class UnsupportedVersion(RejectedMessage):
    """Payload version other than 1."""

    reason = "unsupported_version"


class InvalidPayload(RejectedMessage):
    """A required payload field missing or mistyped, or bad SenML."""

    reason = "invalid_payload"


class TooLarge(RejectedMessage):
    """Over the 2,048-byte limit."""

    reason = "too_large"


class UnknownDevice(RejectedMessage):
    """kid not registered (or, on a device, not the provisioned gateway key)."""

    reason = "unknown_device"


class Revoked(RejectedMessage):
    """kid registered but revoked."""

    reason = "revoked"


class WrongTopic(RejectedMessage):
    """Message addressed to another device: bundle kid differs from its topic, ack names another device."""

    reason = "wrong_topic"


class Replayed(RejectedMessage):
    """Sequence numbers at or below what is already stored, not a missing link of the stored chain."""

    reason = "replayed"


class Conflict(RejectedMessage):
    """Different bytes for sequence numbers already stored (kept as evidence)."""

    reason = "conflict"


class BadProof(RejectedMessage):
    """Batch leaves or inclusion proofs that do not lead to the signed Merkle root (or miscount them)."""

    reason = "bad_proof"


class ChainBroken(RejectedMessage):
    """A batch header whose previous-batch hash is not the hash of the gateway's previous batch."""

    reason = "chain_broken"


# The reasons of docs/protocol.md §8, for device-level messages (bundles, acks); each has a vector.
ALL: tuple[type[RejectedMessage], ...] = (
    Malformed,
    NonDeterministic,
    WrongTag,
    InvalidStructure,
    UnsupportedAlgorithm,
    BadSignature,
    UnsupportedVersion,
    InvalidPayload,
    TooLarge,
    UnknownDevice,
    Revoked,
    WrongTopic,
    Replayed,
    Conflict,
)

BY_REASON: dict[str, type[RejectedMessage]] = {cls.reason: cls for cls in ALL}

# Further reasons of docs/protocol.md §9 for batches (gateway to network); the §8 reasons apply there too.
BATCH_ONLY: tuple[type[RejectedMessage], ...] = (BadProof, ChainBroken)

ALL_REASONS: dict[str, type[RejectedMessage]] = {cls.reason: cls for cls in (*ALL, *BATCH_ONLY)}
