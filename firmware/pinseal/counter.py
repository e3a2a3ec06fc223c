# The reading sequence counter and the boot counter (docs/protocol.md §3, docs/firmware.md "Outbox and
# counters"). Sequence numbers only ever grow, across reboots and power cuts, but flash is written once per
# boot and once per BLOCK readings, not per reading: the file says "every seq below R may have been used"
# (R = reserved); after a reboot counting resumes at R, skipping what was left of the block.
#
# Storage: one 32-byte file holding two 16-byte slots <gen, boot, reserved, crc32>, little endian. Each
# update writes the slot the current one is not in (gen + 1), in one write, then closes the file. A power cut
# during that write can spoil only the slot being written; the other one still holds the previous state,
# which is safe to resume from (its reserved is never above what was used). Why not temp-and-rename:
# littlefs (ESP32, RP2) commits a file's new contents at close, copy-on-write, so either scheme is atomic
# there, but the slot write is one small write with no directory changes (less wear and metadata churn on
# littlefs) and needs no rename-over-existing; on the virtual board, whose flash is written through
# byte by byte and can tear the last write, it still leaves one intact slot.
import binascii
import struct

from micropython import const

DEFAULT_BLOCK = const(64)
DEFAULT_PATH = "/counter.bin"
_SLOT = const(16)
_U32 = const(0xFFFFFFFF)


def _pack(gen, boot, reserved):
    head = struct.pack("<III", gen, boot, reserved)
    return head + struct.pack("<I", binascii.crc32(head) & _U32)


def _unpack(raw, at):
    if len(raw) < at + _SLOT:
        return None
    gen, boot, reserved, crc = struct.unpack_from("<IIII", raw, at)
    if binascii.crc32(memoryview(raw)[at : at + 12]) & _U32 != crc:
        return None
    return gen, boot, reserved


def _spoilt(raw, at):
    # a slot with bytes that are not a valid slot; an all-zero slot is an empty one (first write)
    part = raw[at : at + _SLOT]
    return len(part) > 0 and part != bytes(len(part))


class CounterError(Exception):
    pass


class Counters:
    """Boot counter and reading sequence counter, persisted in `path`.

    c = Counters.open(path, floor_seq=outbox.max_seq() + 1); c.boot; seq = c.next_seq() ...
    """

    @classmethod
    def open(cls, path=DEFAULT_PATH, block=DEFAULT_BLOCK, floor_seq=0):
        """Count one boot and resume the sequence counter (see start()); returns the Counters."""
        c = cls(path, block)
        c.start(floor_seq)
        return c

    def __init__(self, path=DEFAULT_PATH, block=DEFAULT_BLOCK):
        if block < 1:
            raise ValueError("counter: block >= 1")
        self.path = path
        self.block = block
        self.boot = 0
        self.reserved = 0  # every seq below this may have been used (persisted)
        self.writes = 0  # slot writes since open (flash writes of this module)
        self.recovered = False  # a slot was unreadable at open (torn write or corruption)
        self._gen = 0
        self._next = 0

    def start(self, floor_seq=0):
        """Count one boot and resume the sequence counter; returns the boot number (1 on the first boot).

        floor_seq: a seq known to be unused and above every used one (e.g. the outbox's max_seq() + 1); the
        counter never issues below it. It guards against a counter file lost or corrupt beyond both slots.
        """
        try:
            with open(self.path, "rb") as f:
                raw = f.read(2 * _SLOT)
        except OSError:
            raw = b""
        a = _unpack(raw, 0)
        b = _unpack(raw, _SLOT)
        best = a if b is None or (a is not None and a[0] > b[0]) else b
        # a slot spoilt by a torn write (or a lost file) is recovered from; say so for the status
        self.recovered = (a is None and _spoilt(raw, 0)) or (b is None and _spoilt(raw, _SLOT))
        if best is None:
            self._gen, self.boot, start = 0, 0, 0
        else:
            self._gen, self.boot, start = best
        if floor_seq > start:
            start = floor_seq
        self.boot += 1
        self._next = start
        # One write: the new boot number and a fresh block starting where the last one was reserved to.
        self._store(start + self.block, best is None)
        return self.boot

    def next_seq(self):
        """The next reading's sequence number; reserves (writes flash) once every `block` calls."""
        seq = self._next
        if seq >= self.reserved:
            self._store(seq + self.block, False)
        self._next = seq + 1
        return seq

    def skip_to(self, seq):
        """Continue at seq if it is ahead: the gateway's signed rejection says where it accepts again
        (docs/protocol.md §5.1). Persisted by the next next_seq, which finds seq beyond the reservation."""
        if self._next < seq < _U32 - self.block:
            self._next = seq

    def peek(self):
        """The seq next_seq() will return, without taking it."""
        return self._next

    def _store(self, reserved, fresh):
        if reserved > _U32:
            raise CounterError("sequence numbers exhausted")
        gen = self._gen + 1
        data = _pack(gen, self.boot, reserved)
        at = (gen & 1) * _SLOT
        if fresh:
            # no valid slot to keep (first boot, or a file spoilt beyond both slots): write both at once,
            # the other slot empty, i.e. invalid
            whole = bytearray(2 * _SLOT)
            whole[at : at + _SLOT] = data
            with open(self.path, "wb") as f:
                f.write(whole)
        else:
            # overwrite only the slot that does not hold the current state
            with open(self.path, "r+b") as f:
                f.seek(at)
                f.write(data)
        self._gen = gen
        self.reserved = reserved
        self.writes += 1
