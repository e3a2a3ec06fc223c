"""Hypothesis over the serial frame reader (pinseal_protocol.serial_frames): a line may cut, corrupt,
insert or drop bytes anywhere, and the reader must never return a frame that was not sent, never raise,
never keep more than one frame's bytes, and find every intact frame after the damage."""

from hypothesis import given, settings
from hypothesis import strategies as st

from pinseal_protocol import serial_frames as sf

payloads = st.binary(max_size=600) | st.sampled_from([b"", b"\x00" * 300, bytes(range(1, 256)) * 2])
frames = st.tuples(st.sampled_from(sf.KINDS), payloads)


def feed_in_chunks(raw: bytes, cuts: list[int]) -> list:
    reader = sf.FrameReader()
    out = []
    start = 0
    for cut in sorted({c % (len(raw) + 1) for c in cuts}):
        out += reader.feed(raw[start:cut])
        start = cut
    out += reader.feed(raw[start:])
    assert len(reader._buffer) <= sf.MAX_FRAME
    return out


@given(st.lists(frames, max_size=6), st.lists(st.integers(min_value=0), max_size=12))
def test_frames_come_back_whole_however_the_line_chunks_them(sent, cuts) -> None:
    raw = b"".join(sf.encode(kind, payload) for kind, payload in sent)
    assert feed_in_chunks(raw, cuts) == [sf.Frame(kind, payload) for kind, payload in sent]


@settings(max_examples=300)
@given(
    st.lists(frames, min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=4),
    st.lists(st.integers(min_value=0), max_size=3),
    st.lists(st.integers(min_value=0), max_size=6),
)
def test_damage_never_delivers_a_frame_that_was_not_sent(sent, flips, deletions, cuts) -> None:
    encoded = [sf.encode(kind, payload) for kind, payload in sent]
    raw = bytearray(b"".join(encoded))
    for where, xor in flips:
        raw[where % len(raw)] ^= xor or 1
    for where in deletions:
        if raw:
            del raw[where % len(raw)]
    got = feed_in_chunks(bytes(raw), cuts)
    delivered = [e for e in got if isinstance(e, sf.Frame)]
    originals = [sf.Frame(kind, payload) for kind, payload in sent]
    assert all(frame in originals for frame in delivered)
    assert all(e.reason in sf.DROP_REASONS for e in got if isinstance(e, sf.Dropped))
    # a frame whose bytes (and the delimiter before it) the damage missed is still read
    offsets, position = [], 0
    for frame in encoded:
        offsets.append((position, position + len(frame)))
        position += len(frame)
    if not deletions:
        touched = {where % len(raw) for where, _ in flips}
        for (start, end), original in zip(offsets, originals, strict=True):
            before_intact = start == 0 or (start - 1) not in touched
            if before_intact and not touched.intersection(range(start, end)):
                assert original in delivered


@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0), max_size=8))
def test_random_bytes_never_raise_and_rarely_pass(noise, cuts) -> None:
    for event in feed_in_chunks(noise, cuts):
        if isinstance(event, sf.Frame):  # possible only with a matching CRC-32: check it is consistent
            assert sf.encode(event.kind, event.payload)[:-1] in noise
        else:
            assert event.reason in sf.DROP_REASONS


def test_an_endless_stretch_is_dropped_without_being_kept() -> None:
    reader = sf.FrameReader()
    for _ in range(100):
        assert reader.feed(b"\x01" * 1000) == []
        assert len(reader._buffer) <= sf.MAX_FRAME
    good = sf.encode(sf.KIND_ACK, b"ok")
    dropped = sf.Dropped(sf.DROP_OVERSIZE, 100_000)
    assert reader.feed(b"\x00" + good) == [dropped, sf.Frame(sf.KIND_ACK, b"ok")]
