"""Replay / conflict / duplicate classification and the contiguous high-water (history.py)."""

import hashlib

import pytest

from pinseal_protocol.errors import Conflict, Replayed
from pinseal_protocol.history import StoredBundle, Verdict, classify, contiguous_last_seq


def chain(*ranges: tuple[int, int], salt: bytes = b"") -> list[StoredBundle]:
    """Stored bundles for consecutive seq ranges, each linked to the one before."""
    out: list[StoredBundle] = []
    prev = bytes(16)
    for first, last in ranges:
        digest = hashlib.sha256(salt + f"{first}-{last}".encode()).digest()
        out.append(StoredBundle(first, last, prev, digest))
        prev = digest[:16]
    return out


def other(seq: int, last: int, prev: bytes = b"\x99" * 16) -> StoredBundle:
    return StoredBundle(seq, last, prev, hashlib.sha256(f"other{seq}{last}{prev.hex()}".encode()).digest())


def test_first_and_next_bundles_are_new() -> None:
    a, b = chain((0, 1), (2, 3))
    assert classify(a, []) is Verdict.NEW
    assert classify(b, [a]) is Verdict.NEW


def test_same_bytes_is_duplicate() -> None:
    a, b = chain((0, 1), (2, 3))
    assert classify(a, [a, b]) is Verdict.DUPLICATE


@pytest.mark.parametrize(("seq", "last"), [(2, 3), (3, 3), (1, 2), (3, 9), (0, 9)])
def test_overlap_with_different_bytes_is_conflict(seq: int, last: int) -> None:
    stored = chain((0, 1), (2, 3))
    with pytest.raises(Conflict):
        classify(other(seq, last), stored)


def test_counter_rollback_into_a_hole_is_replayed() -> None:
    stored = chain((0, 1), (10, 11))  # 2..9 skipped, chain unbroken
    with pytest.raises(Replayed):
        classify(other(5, 5, prev=stored[1].bundle_hash[:16]), stored)
    with pytest.raises(Replayed):
        classify(other(5, 5), stored)


def test_fork_from_a_stored_bundle_below_high_water_is_replayed() -> None:
    a, c = chain((0, 1), (10, 11))  # c already continues a
    with pytest.raises(Replayed):
        classify(other(5, 5, prev=a.bundle_hash[:16]), [a, c])


def test_missing_link_is_new() -> None:
    a, b, c = chain((0, 1), (2, 3), (10, 11))
    assert classify(b, [a, c]) is Verdict.NEW  # c.prev names b
    first, second = chain((0, 1), (2, 3))
    assert classify(first, [second]) is Verdict.NEW
    a, b, c, d = chain((0, 1), (2, 3), (4, 5), (10, 11))
    assert classify(b, [a, d]) is Verdict.NEW  # continues a, which has no stored successor


def test_above_high_water_is_new_even_with_a_gap() -> None:
    stored = chain((0, 1))
    assert classify(other(50, 60), stored) is Verdict.NEW


def test_contiguous_last_seq_follows_links() -> None:
    a, b, c, d = chain((0, 1), (2, 3), (7, 9), (20, 21))
    assert contiguous_last_seq([]) is None
    assert contiguous_last_seq([a]) == 1
    assert contiguous_last_seq([a, b, c]) == 9  # skipped 4..6 is not a gap: the chain is unbroken
    assert contiguous_last_seq([a, b, d]) == 3  # c missing
    assert contiguous_last_seq(iter([d, c, b, a])) == 21
