"""Hypothesis over the BLE link codec: decoders raise nothing but `BleLinkError` whatever a radio hands
them, and the reassembler never yields a bundle that was not sent, whatever the link drops, repeats or
reorders, and yields every bundle once the missing chunks it asked for arrive."""

import contextlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pinseal_protocol import ble_link as bl


@given(st.binary(max_size=600))
def test_decoders_raise_only_the_codec_error(raw: bytes) -> None:
    for decode in (bl.parse_chunk, bl.decode_info, bl.decode_down, bl.ad_structures, bl.kid_prefix):
        with contextlib.suppress(bl.BleLinkError):
            decode(raw)


@given(st.binary(max_size=40), st.binary(max_size=40))
def test_advertising_parser_raises_only_the_codec_error(adv: bytes, rsp: bytes) -> None:
    with contextlib.suppress(bl.BleLinkError):
        bl.parse_advertising(adv, rsp)


@given(
    st.dictionaries(
        st.integers(-2, 6), st.one_of(st.integers(-5, 2**33), st.text(max_size=40), st.binary(max_size=40))
    )
)
def test_info_maps_of_any_shape(value) -> None:
    from pinseal_protocol import dcbor

    try:
        info = bl.decode_info(dcbor.encode(value))
    except bl.BleLinkError:
        return
    assert info.encode() == dcbor.encode(value)


bundles = st.binary(min_size=1, max_size=700)


@settings(max_examples=300)
@given(
    st.lists(bundles, min_size=1, max_size=4), st.integers(0, 2**32), st.floats(0, 0.5), st.integers(0, 255)
)
def test_reassembly_under_drops_duplicates_and_reorders(sent, seed, loss, first_transfer) -> None:
    """Each bundle goes as its own transfer through a lossy, repeating, reordering link; the receiver
    asks for its gaps (and for everything missing when the link goes quiet) until it has the bundle.
    What comes out is exactly what was sent, each bundle once, in order."""
    rng = random.Random(seed)
    r = bl.Reassembler()
    got: list[bytes] = []
    for n, bundle in enumerate(sent):
        transfer = (first_transfer + n) % 256
        pieces = bl.chunks(transfer, bundle)
        pending = list(range(len(pieces)))
        for _round in range(200):  # bounded: each round delivers with probability 1 - loss
            batch = [i for i in pending for _ in range(rng.choice((1, 1, 2)))]
            rng.shuffle(batch)
            asked: list[int] = []
            done = False
            for i in batch:
                if rng.random() < loss:
                    continue
                fed = r.feed(bl.parse_chunk(pieces[i]))
                asked += fed.gaps
                if fed.bundle is not None:
                    got.append(fed.bundle)
                    done = True
            if done:
                break
            # the receiver asks for what it knows it misses; of a transfer it has no chunk of, it knows
            # nothing, and the sender sends it all again (the device's own resend timeout)
            in_hand = r.transfer == transfer and r.in_progress
            pending = sorted(set(asked) | set(r.missing())) if in_hand else list(range(len(pieces)))
        else:
            raise AssertionError("a bundle never completed")
        # a stale repeat of this transfer after completion changes nothing
        assert r.feed(bl.parse_chunk(pieces[0])).bundle is None
    assert got == sent


@given(st.lists(st.binary(min_size=4, max_size=30), max_size=60))
def test_garbage_chunks_never_make_a_bundle_over_the_bound(raws) -> None:
    r = bl.Reassembler(max_bundle=100)
    for raw in raws:
        try:
            chunk = bl.parse_chunk(raw)
        except bl.BleLinkError:
            continue
        fed = r.feed(chunk)
        if fed.bundle is not None:
            assert 0 < len(fed.bundle) <= 100
