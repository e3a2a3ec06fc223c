# pinseal.outbox inside the MicroPython VM: round trips, boot recovery (a torn last record at every byte
# offset, a corrupt record in the middle, an interrupted eviction), eviction and its count, acks and
# segment retirement, the chain head across retirement and reboots.
import hashlib
import os

from pinseal.outbox import Outbox

_n = [0]
CAP = 3 * 2304


def _dir():
    _n[0] += 1
    return "/t_outbox_%d" % _n[0]


def _files(d):
    out = {}
    for name in os.listdir(d):
        with open(d + "/" + name, "rb") as f:
            out[name] = f.read()
    return out


def _restore(d, files):
    for name in os.listdir(d):
        os.remove(d + "/" + name)
    for name in files:
        with open(d + "/" + name, "wb") as f:
            f.write(files[name])


def _bundle(first, last, size=300):
    seed = hashlib.sha256(b"%d-%d" % (first, last)).digest()
    return (seed * (size // 32 + 1))[:size]


def _link(data):
    return hashlib.sha256(data).digest()[:16]


def _state(ob):
    return (
        ob.pending_readings(),
        [(a, b, _link(x)) for a, b, x in ob.pending_bundles()],
        ob.chain_head(),
        ob.dropped(),
        ob.max_seq(),
    )


def _check_reopens(d, want, cap, seg=0):
    ob = Outbox(d, cap, seg)
    try:
        assert _state(ob) == want, (_state(ob), want)
    finally:
        ob.close()


def _reading(seq):
    return b"reading %d " % seq + bytes(seq % 13)


def _fill(ob, start, count, per_bundle=4, size=300):
    seq = start
    for _ in range(count):
        ob.add_reading(seq, _reading(seq))
        seq += 1
        if ob.pending_count() == per_bundle:
            p = ob.pending_readings()
            ob.add_bundle(p[0][0], p[-1][0], _bundle(p[0][0], p[-1][0], size), ob.dropped())
    return seq


def _last_segment(d):
    names = sorted((int(n[:-4]), n) for n in os.listdir(d) if n.endswith(".seg"))
    return names[-1][1]


def test_round_trip_and_reopen():
    d = _dir()
    ob = Outbox(d, 64 * 1024)
    assert ob.chain_head() == bytes(16) and ob.max_seq() == -1
    _fill(ob, 0, 10)
    assert [s for s, _ in ob.pending_readings()] == [8, 9]
    assert ob.pending_readings()[1] == (9, _reading(9))
    bundles = list(ob.pending_bundles())
    assert [(a, b) for a, b, _ in bundles] == [(0, 3), (4, 7)]
    assert bundles[1][2] == _bundle(4, 7)
    assert ob.chain_head() == _link(_bundle(4, 7))
    assert ob.oldest_bundle() == bundles[0]
    before = _state(ob)
    ob.close()
    again = Outbox(d, 64 * 1024)
    assert _state(again) == before
    assert again.max_seq() == 9
    try:
        again.add_reading(9, b"x")
    except ValueError:
        pass
    else:
        raise AssertionError("a seq not above the last one was accepted")


def test_ack_removes_covered_bundles_and_retires_segments():
    d = _dir()
    ob = Outbox(d, CAP * 2)
    _fill(ob, 0, 64, 4, 600)
    n = ob.bundle_count()
    assert n == 16 and ob.stats()["segments"] > 2
    assert ob.ack(2) == 0  # covers no bundle's last reading: nothing happens, nothing written
    w = ob.bytes_written
    assert ob.ack(2) == 0 and ob.bytes_written == w
    assert ob.ack(7) == 2
    assert ob.ack(7) == 0  # a repeated ack
    assert ob.ack(63) == 14
    assert ob.bundle_count() == 0 and ob.oldest_bundle() is None
    st = ob.stats()
    assert st["segments"] == 1 and st["retired_segments"] >= 2, st
    assert len(os.listdir(d)) == 1
    head = ob.chain_head()
    ob.close()
    # the chain head and the seq floor survive although every bundle that made them is gone
    again = Outbox(d, CAP * 2)
    assert again.chain_head() == head == _link(_bundle(60, 63, 600))
    assert again.max_seq() == 63
    assert again.bundle_count() == 0 and again.pending_count() == 0


def test_chain_head_across_many_retirements_and_reboots():
    d = _dir()
    seq = 0
    for boot in range(6):
        ob = Outbox(d, 4 * CAP)
        seq = _fill(ob, seq, 40, 4, 500)
        ob.ack(seq - 1)
        head = ob.chain_head()
        ob.close()
        ob = Outbox(d, 4 * CAP)
        assert ob.chain_head() == head == _link(_bundle(seq - 4, seq - 1, 500)), boot
        assert ob.dropped() == 0
        ob.close()
        assert len(os.listdir(d)) == 1, os.listdir(d)


def _build_log(d):
    # a log whose last records are of every kind, recorded after each append
    ob = Outbox(d, 64 * 1024, 2304)  # small segments: the bundle below starts a new one
    snaps = []

    def snap():
        snaps.append((_files(d), _state(ob)))

    snap()
    seq = 0
    for _ in range(6):
        ob.add_reading(seq, _reading(seq))
        seq += 1
        snap()
    p = ob.pending_readings()
    ob.add_bundle(p[0][0], p[-1][0], _bundle(p[0][0], p[-1][0], 1000))
    snap()
    ob.ack(5)
    snap()
    ob.add_reading(seq, _reading(seq))
    snap()
    ob.add_bundle(seq, seq, _bundle(seq, seq, 1100))  # does not fit: a new segment, head record first
    # ...and the old one, with nothing live left in it, is retired once the bundle is written
    assert ob.stats()["segments"] == 1 and ob.stats()["retired_segments"] == 1
    snap()
    ob.close()
    return snaps


def test_torn_last_record_at_every_byte_offset_recovers_the_state_before_it():
    d = _dir()
    snaps = _build_log(d)
    checked = 0
    for i in range(1, len(snaps)):
        old_files, old_state = snaps[i - 1]
        new_files, new_state = snaps[i]
        last = sorted(new_files, key=lambda n: int(n[:-4]))[-1]
        start = len(old_files.get(last, b""))
        for cut in range(start, len(new_files[last])):
            # a plain prefix, or (every 5th offset) erased flash after it
            for fill in (b"", b"\xff" * 3) if cut % 5 == 0 else (b"",):
                files = dict(old_files)  # what follows the write (a retirement) has not happened
                files[last] = new_files[last][:cut] + fill
                _restore(d, files)
                ob = Outbox(d, 64 * 1024, 2304)
                st = _state(ob)
                assert st == old_state, (i, cut, st, old_state)
                # (a cut at a record boundary leaves nothing torn, only the records before it)
                assert ob.torn == 1 or not fill and ob.torn == 0, (i, cut)
                # it carries on: the next append lands after the valid prefix, and reopens the same
                ob.add_reading(100 + cut, b"after")
                want = _state(ob)
                ob.close()
                _check_reopens(d, want, 64 * 1024, 2304)
                checked += 1
    assert checked > 1000, checked


def test_corrupt_middle_record_gives_up_pending_readings_once_and_keeps_the_rest():
    d = _dir()
    ob = Outbox(d, 64 * 1024)
    for seq in range(5):
        ob.add_reading(seq, _reading(seq))
    files = _files(d)
    name = _last_segment(d)
    off = len(files[name])
    ob.add_reading(5, _reading(5))  # this record gets corrupted
    for seq in range(6, 9):
        ob.add_reading(seq, _reading(seq))
    ob.add_bundle(6, 8, _bundle(6, 8))
    ob.add_reading(9, _reading(9))
    ob.close()
    files = _files(d)
    data = bytearray(files[name])
    data[off + 5] ^= 0x40  # a bit flipped inside reading 5's seq
    files[name] = bytes(data)
    _restore(d, files)
    ob = Outbox(d, 64 * 1024)
    assert ob.corrupt == 1 and ob.torn == 0
    # readings 0..4, pending before the unreadable record, are given up (it might have been the bundle
    # that sealed them) and counted; the bundle after it and reading 9 are intact
    assert [s for s, _ in ob.pending_readings()] == [9]
    assert [(a, b, x) for a, b, x in ob.pending_bundles()] == [(6, 8, _bundle(6, 8))]
    assert ob.chain_head() == _link(_bundle(6, 8))
    assert ob.dropped() == 5
    ob.close()
    # counted once: the next boot finds the same corruption and the record that accounted for it
    again = Outbox(d, 64 * 1024)
    assert again.dropped() == 5 and again.corrupt == 1
    assert [s for s, _ in again.pending_readings()] == [9]
    # the count goes out with the next bundle
    again.add_bundle(9, 9, _bundle(9, 9), again.dropped())
    assert again.dropped() == 0
    again.close()
    _check_reopens(d, _state(again), 64 * 1024)


def test_corrupt_bundle_record_in_the_middle():
    d = _dir()
    ob = Outbox(d, 64 * 1024)
    _fill(ob, 0, 8, 4)
    files = _files(d)
    name = _last_segment(d)
    start = len(files[name])
    _fill(ob, 8, 8, 4)  # readings 8..11, bundle 8..11 (corrupted below), 12..15, bundle 12..15
    ob.close()
    files = _files(d)
    data = bytearray(files[name])
    at = data.find(_bundle(8, 11)[:20], start)
    data[at + 7] ^= 1
    files[name] = bytes(data)
    _restore(d, files)
    ob = Outbox(d, 64 * 1024)
    assert ob.corrupt == 1
    # the lost bundle's readings are neither resealed (they were pending when replay hit the bad record:
    # given up and counted) nor duplicated; everything after it is intact
    assert [(a, b) for a, b, _ in ob.pending_bundles()] == [(0, 3), (4, 7), (12, 15)]
    assert ob.pending_count() == 0 and ob.dropped() == 4


def test_eviction_drops_oldest_bundles_counts_them_and_bounds_flash():
    d = _dir()
    ob = Outbox(d, CAP)
    _fill(ob, 0, 200, 4, 600)  # no acks: far more than the capacity
    st = ob.stats()
    assert st["evicted_segments"] > 0, st
    assert st["flash_bytes"] <= CAP, st
    total = sum(len(x) for x in _files(d).values())
    assert total == st["flash_bytes"], (total, st)
    bundles = list(ob.pending_bundles())
    kept = sum(b - a + 1 for a, b, _ in bundles) + ob.pending_count()
    # every reading is kept or counted: as dropped since it was last reported, or reported already by
    # the bundles sealed after the eviction (here each bundle reported what it saw)
    assert bundles[-1][1] == 199 and bundles[0][0] > 0  # the newest are kept, the oldest went
    assert kept + st["evicted_readings"] == 200, (kept, st)
    # the contiguous newest bundles are intact and chained by their bytes
    for a, b, x in bundles:
        assert x == _bundle(a, b, 600)
    before = _state(ob)
    ob.close()
    _check_reopens(d, before, CAP)


def test_dropped_is_reported_by_the_next_bundle_and_survives_reboots():
    d = _dir()
    ob = Outbox(d, CAP)
    seq = 0
    # readings only, never sealed: the oldest segment goes, readings counted one by one
    while ob.stats()["evicted_segments"] == 0:
        ob.add_reading(seq, b"x" * 100)
        seq += 1
    dropped = ob.dropped()
    assert dropped == ob.stats()["evicted_readings"] > 0
    assert ob.pending_readings()[0][0] == dropped
    ob.close()
    ob = Outbox(d, CAP)
    assert ob.dropped() == dropped
    p = ob.pending_readings(4)
    ob.add_bundle(p[0][0], p[-1][0], _bundle(0, 0), dropped - 1)  # a bundle that reported one less
    assert ob.dropped() == 1
    ob.close()
    _check_reopens(d, _state(ob), CAP)


def test_interrupted_eviction_is_finished_at_boot_and_counted_once():
    d = _dir()
    ob = Outbox(d, CAP)
    seq = 0
    snap = None
    while ob.stats()["evicted_segments"] == 0:
        snap = _files(d)
        seq = _fill(ob, seq, 4, 4, 600)
    ob.close()
    dropped = ob.dropped()
    files = _files(d)
    gone = [n for n in snap if n not in files]
    assert len(gone) == 1
    files[gone[0]] = snap[gone[0]]  # the power went after the evict record, before the delete
    _restore(d, files)
    ob = Outbox(d, CAP)
    assert gone[0] not in os.listdir(d)
    assert ob.dropped() == dropped


def test_leftover_temp_file_of_a_tail_repair_is_removed():
    d = _dir()
    ob = Outbox(d, CAP)
    _fill(ob, 0, 5)
    ob.close()
    with open(d + "/cut.tmp", "wb") as f:
        f.write(b"half a copy")
    ob = Outbox(d, CAP)
    before = _state(ob)
    ob.close()
    assert "cut.tmp" not in os.listdir(d)
    assert [s for s, _ in before[0]] == [4]
