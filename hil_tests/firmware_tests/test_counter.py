# pinseal.counter inside the MicroPython VM: boot counter, reserve-ahead sequence counter, two-slot
# storage that survives a torn slot write at every byte offset.
from pinseal.counter import Counters

_n = [0]


def _path():
    _n[0] += 1
    return "/t_counter_%d.bin" % _n[0]


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _put(path, data):
    with open(path, "wb") as f:
        f.write(data)


def test_first_boot_counts_from_zero_and_reserves_in_blocks():
    p = _path()
    c = Counters.open(p, 8)
    assert c.boot == 1
    assert c.writes == 1 and c.reserved == 8
    seqs = [c.next_seq() for _ in range(20)]
    assert seqs == list(range(20)), seqs
    # one write at boot, then one per 8 readings: at 8 and at 16
    assert c.writes == 3, c.writes
    assert c.reserved == 24
    assert not c.recovered


def test_reboots_never_reuse_a_seq_and_count_boots():
    p = _path()
    issued = []
    writes = 0
    for boot in range(1, 30):
        c = Counters.open(p, 5)
        assert c.boot == boot
        for _ in range(boot % 7):  # 0..6 readings a boot, across block boundaries
            issued.append(c.next_seq())
        assert c.peek() > (issued[-1] if issued else -1)
        writes += c.writes
    assert issued == sorted(set(issued)), issued
    # a boot costs one write (boot number and a fresh block), a block boundary within a boot one more
    assert writes <= 29 + len(issued) // 5, writes


def test_floor_from_the_outbox_wins_over_a_lower_counter():
    p = _path()
    c = Counters.open(p, 4)
    c.next_seq()
    c = Counters.open(p, 4, floor_seq=1000)
    assert c.next_seq() == 1000
    c = Counters.open(p, 4, floor_seq=10)
    assert c.next_seq() >= 1004


def test_skip_to_moves_only_forward_and_survives_a_reboot():
    # where the gateway's signed rejection or ack says it accepts again (docs/protocol.md §5.1)
    p = _path()
    c = Counters.open(p, 4)
    assert [c.next_seq() for _ in range(3)] == [0, 1, 2]
    c.skip_to(1)  # behind: ignored
    assert c.next_seq() == 3
    c.skip_to(1000)
    assert c.next_seq() == 1000
    c = Counters.open(p, 4)
    assert c.next_seq() > 1000  # the jump was persisted with the reading that used it
    c.skip_to(0xFFFFFFFF)  # beyond what the counter can hold: ignored, not a crash later
    assert c.next_seq() < 2000


def test_torn_slot_write_at_every_offset_resumes_above_every_issued_seq():
    p = _path()
    c = Counters.open(p, 4)
    issued = [c.next_seq() for _ in range(4)]  # next call writes a slot
    before = _read(p)
    c.next_seq()  # this call's slot write is what we tear below: torn, the call never returns its seq
    after = _read(p)
    changed = [i for i in range(len(before)) if before[i] != after[i]]
    at = changed[0] - changed[0] % 16
    for cut in range(16):
        torn = bytearray(before)
        torn[at : at + cut] = after[at : at + cut]
        _put(p, torn)
        again = Counters.open(p, 4)
        assert again.boot == 2, (cut, again.boot)
        assert again.next_seq() > max(issued), cut
        # a partly overwritten slot is reported as recovered (unless the prefix left it unchanged)
        assert again.recovered or cut == 0 or bytes(torn) == before
    # the file truncated mid-slot (a torn first write of a new file) and bytes of garbage
    _put(p, after[:7])
    c = Counters.open(p, 4, floor_seq=50)
    assert c.recovered and c.next_seq() == 50
    _put(p, b"\xff" * 32)
    c = Counters.open(p, 4, floor_seq=60)
    assert c.recovered and c.next_seq() == 60


def test_slots_alternate_and_both_stay_valid():
    p = _path()
    c = Counters.open(p, 1)
    for _ in range(5):
        c.next_seq()
    raw = _read(p)
    assert len(raw) == 32
    # spoil the newer slot after the fact (bit rot, not a torn write): the older one is one block behind,
    # so the outbox's floor (its max_seq() + 1: every seq used went into it) keeps seqs from coming back
    last = c.peek() - 1
    newer = 16 * (c._gen & 1)
    spoilt = bytearray(raw)
    spoilt[newer] ^= 0xFF
    _put(p, spoilt)
    again = Counters.open(p, 1, floor_seq=last + 1)
    assert again.recovered
    assert again.next_seq() > last
    assert again.boot == 2
