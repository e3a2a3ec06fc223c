"""`store.relevant_bundles`: classify over the indexed subset gives the verdict classify gives over all."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pinseal_ingest import db, store
from pinseal_protocol import history
from pinseal_protocol.errors import RejectedMessage

KID = b"\x05" * 16


@dataclass(frozen=True)
class FakeBundle:
    """What the store and classify read of a bundle (no signature needed for this logic)."""

    seq: int
    last_seq: int
    prev: bytes
    bundle_hash: bytes
    kid: bytes = KID
    n_readings: int = 1
    raw: bytes = b""
    rows: tuple[Any, ...] = ()  # no readings: the bundle's time (partition key) is then 0

    @property
    def link(self) -> bytes:
        return self.bundle_hash[:16]


def verdict(candidate: FakeBundle, stored: list[FakeBundle]) -> str:
    try:
        return history.classify(candidate, stored).value
    except RejectedMessage as exc:
        return exc.reason


@st.composite
def candidates(draw: st.DrawFn, links: list[bytes], n: int) -> FakeBundle:
    seq = draw(st.integers(0, 60))
    last = seq + draw(st.integers(0, 3))
    prev = draw(st.sampled_from([*links, bytes(16), b"\x01" * 16]))
    return FakeBundle(seq, last, prev, n.to_bytes(32, "big") if draw(st.booleans()) else bytes([n % 7]) * 32)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_classify_over_relevant_equals_classify_over_all(
    tmp_path_factory: object, data: st.DataObject
) -> None:
    path = Path(tmp_path_factory.mktemp("rel")) / "s.sqlite"  # type: ignore[attr-defined]
    conn = db.connect(path)
    stored: list[FakeBundle] = []
    for n in range(data.draw(st.integers(1, 25))):
        candidate = data.draw(candidates([b.link for b in stored], n))
        expected = verdict(candidate, stored)
        relevant = store.relevant_bundles(conn, candidate)  # type: ignore[arg-type]
        assert verdict(candidate, relevant) == expected  # type: ignore[arg-type]
        if expected == "new":
            store.insert_bundle(conn, candidate)  # type: ignore[arg-type]
            stored.append(candidate)
    conn.close()
