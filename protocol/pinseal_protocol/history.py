"""Classifying a verified bundle against the bundles already stored for its device (§3, §8).

Pure logic, shared by the gateway and network ingest so both reach the same verdict:

- duplicate: the same bytes as a stored bundle (re-acked, not an error to the device);
- `Conflict`: overlaps the sequence numbers of a stored bundle with different bytes (the device
  re-sealed readings, or two devices share a key); the caller keeps the bytes as evidence;
- `Replayed`: entirely at or below the stored high-water sequence without overlapping a stored
  bundle, i.e. the counter went backwards into a hole (devices may skip values);
- new: otherwise.

One exception to "replayed": a bundle below the high-water that is the missing link of the stored
chain (a stored bundle's `prev` names it, or it continues a stored bundle that has no stored
successor yet) is new. Without it a bundle lost once and resent after its successor could never be
stored, so its device could never be acked past the gap.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from pinseal_protocol.errors import Conflict, Replayed

PREV_SIZE = 16


class BundleLike(Protocol):
    """What classification needs of a bundle (`bundle.Bundle` and `StoredBundle` both fit)."""

    @property
    def seq(self) -> int: ...
    @property
    def last_seq(self) -> int: ...
    @property
    def prev(self) -> bytes: ...
    @property
    def bundle_hash(self) -> bytes: ...


@dataclass(frozen=True)
class StoredBundle:
    """The index entry a store keeps per accepted bundle."""

    seq: int
    last_seq: int
    prev: bytes
    bundle_hash: bytes

    @classmethod
    def of(cls, bundle: BundleLike) -> "StoredBundle":
        return cls(bundle.seq, bundle.last_seq, bundle.prev, bundle.bundle_hash)


class Verdict(Enum):
    """Outcome for a bundle that is not rejected."""

    NEW = "new"
    DUPLICATE = "duplicate"


def _link(bundle: BundleLike) -> bytes:
    return bundle.bundle_hash[:PREV_SIZE]


def classify(candidate: BundleLike, stored: Iterable[BundleLike]) -> Verdict:
    """NEW or DUPLICATE; raises `Conflict` or `Replayed` as described in the module docstring."""
    stored = list(stored)
    for old in stored:
        if old.bundle_hash == candidate.bundle_hash:
            return Verdict.DUPLICATE
    for old in stored:
        if candidate.seq <= old.last_seq and old.seq <= candidate.last_seq:
            raise Conflict(
                f"readings {candidate.seq}..{candidate.last_seq} overlap stored {old.seq}..{old.last_seq}"
            )
    high_water = max((old.last_seq for old in stored), default=None)
    if high_water is not None and candidate.last_seq <= high_water and not _fills_gap(candidate, stored):
        raise Replayed(f"readings {candidate.seq}..{candidate.last_seq} at or below stored {high_water}")
    return Verdict.NEW


def _fills_gap(candidate: BundleLike, stored: list[BundleLike]) -> bool:
    """Whether `candidate` is a missing link of the stored chain rather than a counter rollback."""
    link = _link(candidate)
    if any(old.prev == link and candidate.last_seq < old.seq for old in stored):
        return True
    for old in stored:
        if _link(old) == candidate.prev and old.last_seq < candidate.seq:
            # It continues `old`; only a gap if `old` has no stored successor already (else a fork).
            return not any(other.prev == candidate.prev for other in stored)
    return False


def contiguous_last_seq(stored: Iterable[BundleLike]) -> int | None:
    """Last sequence number of the unbroken prev-chain starting at the lowest stored bundle.

    Sequence numbers may skip, so "stored contiguously" (the ack's `seq`, §5) follows `prev` links,
    not consecutive numbers.
    """
    bundles = list(stored)
    if not bundles:
        return None
    by_prev: dict[bytes, BundleLike] = {}
    for bundle in bundles:
        by_prev.setdefault(bundle.prev, bundle)
    current = min(bundles, key=lambda b: b.seq)
    while (nxt := by_prev.get(_link(current))) is not None and nxt.seq > current.last_seq:
        current = nxt
    return current.last_seq
