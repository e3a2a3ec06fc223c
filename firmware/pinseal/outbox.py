# The flash outbox (docs/firmware.md "Outbox and counters"): unsealed readings, sealed bundles, acks and the
# chain head, in append-only records with a length and a CRC-32, spread over numbered segment files.
#
# Record: kind (1 byte) | body length (2, LE) | body | CRC-32 (4, LE) over kind, length and body.
#   H head     chain head (16) | dropped (u32) | next seq floor (u32)    first record of every segment
#   R reading  seq (u32) | the reading's bytes (opaque, the app encodes them)
#   B bundle   first seq (u32) | last seq (u32) | dropped it reported (u32) | the bundle's bytes
#   A ack      seq (u32): bundles whose last seq <= seq are gone
#   D evicted  segment (u32) | readings (u32): that segment was evicted whole, its readings are dropped
#   L lost     segment (u32) | offset (u32) | readings (u32): readings given up for a corrupt record there
#   (L records are written by boot recovery, pinseal.outbox_recovery, which also holds the replay code.)
#
# Replay rules (boot recovery) are the run-time rules: a bundle record supersedes every pending reading
# with seq <= its last seq (those below its first seq, never sealed, are counted dropped), so appending it
# is the one atomic step that turns readings into a bundle. A torn or corrupt last record (nothing valid
# after it in the last segment) is a write the power cut interrupted: the segment is rewritten without it.
# A corrupt record with valid records after it is a fault of the flash: replay resyncs at the next valid
# record, and gives up every reading pending before it (the record may have been the bundle that sealed
# them; sealing them again would make different bytes for the same seqs), counted once via an L record.
#
# Space: the active segment is appended to until it would exceed segment_bytes, then a new one starts
# with a head record (state so far). The oldest segment is deleted as soon as nothing in it is live (all
# its bundles acked, its readings sealed): no live record is ever copied. When the segments together would
# exceed capacity_bytes, the oldest segment is evicted whole (a D record first), its live readings and
# bundles counted in `dropped` until a bundle reports them.
import binascii
import hashlib
import os
import struct

from micropython import const

_HEAD = const(0x48)
_READING = const(0x52)
_BUNDLE = const(0x42)
_ACK = const(0x41)
_EVICT = const(0x44)
_FRAME = const(7)  # kind, length, CRC
_HDR = const(3)
_MAX_BODY = const(4096)
_BUNDLE_META = const(12)
_CHAIN = const(16)
_MIN_SEGMENT = const(2304)  # one 2,048-byte bundle record plus a head record
_U32 = const(0xFFFFFFFF)
_SUFFIX = ".seg"
DEFAULT_PATH = "/outbox"
DEFAULT_CAPACITY = const(65536)


class OutboxError(Exception):
    pass


def _crc(data, crc=0):
    return binascii.crc32(data, crc) & _U32


class Outbox:
    """Outbox(dir, capacity_bytes): opens (and recovers) the outbox kept in folder `dir`."""

    def __init__(self, path=DEFAULT_PATH, capacity_bytes=DEFAULT_CAPACITY, segment_bytes=0):
        seg = segment_bytes or max(_MIN_SEGMENT, capacity_bytes // 8)
        if seg < _MIN_SEGMENT or capacity_bytes < 3 * seg:
            raise ValueError("outbox: capacity must hold 3 segments of >= %d bytes" % _MIN_SEGMENT)
        self.path = path.rstrip("/")
        self.capacity = capacity_bytes
        self.segment_bytes = seg
        self._chain = bytes(_CHAIN)
        self._dropped = 0  # readings evicted (or lost) since the last bundle that reported them
        self._floor = 0  # every seq ever recorded is below this
        # live records, oldest first, as lists of small ints (4 bytes an entry on a 32-bit board)
        self._r_seq = []
        self._r_seg = []
        self._r_off = []
        self._b_first = []
        self._b_last = []
        self._b_seg = []
        self._b_off = []
        self._b_len = []
        self._segs = []  # segment numbers on flash, oldest first
        self._total = 0  # their bytes
        self._size = 0  # bytes of the active (last) segment
        self._f = None
        # counters (this boot)
        self.bytes_written = 0
        self.records_written = 0
        self.acked_bytes = 0
        self.acked_bundles = 0
        self.evicted_segments = 0
        self.evicted_readings = 0
        self.retired_segments = 0
        self.torn = 0
        self.corrupt = 0
        self._lost = []  # during recovery: (seg, off, readings) of corrupt records found
        self._evicted = []  # during recovery: segments named by evict records
        # boot recovery lives in its own module, dropped from RAM once the outbox is open
        from pinseal import forget, outbox_recovery

        outbox_recovery.recover(self)
        forget("pinseal.outbox_recovery")

    # -- queries -----------------------------------------------------------------------------------------
    def chain_head(self):
        """prev for the next bundle: the first 16 bytes of SHA-256 of the last bundle sealed (zeros at
        first)."""
        return self._chain

    def dropped(self):
        """Readings evicted (or lost to a corrupt record) and not yet reported by a bundle's status."""
        return self._dropped

    def max_seq(self):
        """The highest seq the outbox has seen (readings, bundles, acks), -1 if none: a floor for the
        counter."""
        return self._floor - 1

    def pending_count(self):
        return len(self._r_seq)

    def bundle_count(self):
        return len(self._b_first)

    def pending_readings(self, limit=0):
        """Unsealed readings, oldest first: a list of (seq, bytes), at most `limit` of them (0: all)."""
        n = len(self._r_seq)
        if limit and limit < n:
            n = limit
        out = []
        f = None
        seg = -1
        try:
            for i in range(n):
                if self._r_seg[i] != seg:  # one open file per segment: each open allocates a file cache
                    if f is not None:
                        f.close()
                    seg = self._r_seg[i]
                    f = self._open(seg)
                data = self._read_from(f, self._r_off[i], _READING, 4)
                if data is not None:
                    out.append((self._r_seq[i], data))
        finally:
            if f is not None:
                f.close()
        return out

    def oldest_bundle(self):
        """(first_seq, last_seq, bundle bytes) of the oldest unacked bundle, or None."""
        for got in self.pending_bundles():
            return got
        return None

    def pending_bundles(self):
        """Sealed, unacked bundles, oldest first: yields (first_seq, last_seq, bundle bytes) one at a time,
        the bytes exactly as add_bundle() got them. Acks during the iteration are fine."""
        i = 0
        while i < len(self._b_first):
            first = self._b_first[i]
            data = self._read(self._b_seg[i], self._b_off[i], _BUNDLE, _BUNDLE_META)
            if data is not None:
                yield first, self._b_last[i], data
            # the list may have lost entries at its front meanwhile (acks): continue after `first`
            i = 0
            while i < len(self._b_first) and self._b_first[i] <= first:
                i += 1

    def stats(self):
        return {
            "bytes_written": self.bytes_written,
            "records_written": self.records_written,
            "acked_bundles": self.acked_bundles,
            "acked_bytes": self.acked_bytes,
            "pending_readings": len(self._r_seq),
            "bundles": len(self._b_first),
            "segments": len(self._segs),
            "flash_bytes": self._total,
            "dropped": self._dropped,
            "evicted_segments": self.evicted_segments,
            "evicted_readings": self.evicted_readings,
            "retired_segments": self.retired_segments,
            "torn": self.torn,
            "corrupt": self.corrupt,
        }

    # -- changes -----------------------------------------------------------------------------------------
    def add_reading(self, seq, data):
        if seq < self._floor:
            raise ValueError("outbox: seq %d is not above every recorded seq" % seq)
        if len(data) + 4 > _MAX_BODY:
            raise ValueError("outbox: reading too large")
        seg, off = self._append(_READING, struct.pack("<I", seq), data)
        self._floor = seq + 1
        self._r_seq.append(seq)
        self._r_seg.append(seg)
        self._r_off.append(off)

    def add_bundle(self, first_seq, last_seq, bundle, reported_dropped=None):
        """Store a sealed bundle of readings first_seq..last_seq; it supersedes those readings (and any
        pending below first_seq, counted dropped). reported_dropped: the `dropped` its status carries, taken
        off the count (None: all of dropped(); pass the value read for the status when evictions may happen
        while signing). The chain head becomes the bundle's link."""
        if reported_dropped is None:
            reported_dropped = self._dropped
        if last_seq < first_seq or (self._b_last and first_seq <= self._b_last[-1]):
            raise ValueError("outbox: bundle seqs must follow the previous bundle's")
        if len(bundle) + _BUNDLE_META > _MAX_BODY:
            raise ValueError("outbox: bundle too large")
        meta = struct.pack("<III", first_seq, last_seq, reported_dropped)
        seg, off = self._append(_BUNDLE, meta, bundle)
        self._apply_bundle(first_seq, last_seq, reported_dropped, hashlib.sha256(bundle).digest()[:_CHAIN])
        self._b_first.append(first_seq)
        self._b_last.append(last_seq)
        self._b_seg.append(seg)
        self._b_off.append(off)
        self._b_len.append(len(bundle))
        self._retire()

    def ack(self, seq):
        """A verified ack covering seq: removes the bundles whose last reading is <= seq; returns how many."""
        if not self._b_last or self._b_last[0] > seq:
            return 0
        self._append(_ACK, struct.pack("<I", seq), None)
        n = self._apply_ack(seq)
        self._retire()
        return n

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    # -- rules shared by run time and replay ---------------------------------------------------------------
    def _apply_bundle(self, first, last, reported, link):
        d = self._dropped - reported
        if d < 0:
            d = 0
        rs = self._r_seq
        n = 0
        while n < len(rs) and rs[n] <= last:
            if rs[n] < first:
                d += 1  # pending but not in the bundle: never sealed, so dropped
            n += 1
        self._pop_readings(n)
        self._dropped = d
        self._chain = link
        if last >= self._floor:
            self._floor = last + 1

    def _apply_ack(self, seq):
        n = 0
        bl = self._b_last
        while n < len(bl) and bl[n] <= seq:
            n += 1
        if self._f is not None:  # at run time, not in replay
            self.acked_bundles += n
            for i in range(n):
                self.acked_bytes += self._b_len[i]
        del self._b_first[:n], self._b_last[:n], self._b_seg[:n], self._b_off[:n], self._b_len[:n]
        if seq >= self._floor:
            self._floor = seq + 1
        return n

    def _pop_readings(self, n):
        if n:
            del self._r_seq[:n], self._r_seg[:n], self._r_off[:n]

    def _drop_segment_entries(self, seg):
        # everything live in segments <= seg goes; returns the readings that held
        n = 0
        while n < len(self._r_seg) and self._r_seg[n] <= seg:
            n += 1
        readings = n
        self._pop_readings(n)
        n = 0
        while n < len(self._b_seg) and self._b_seg[n] <= seg:
            readings += self._b_last[n] - self._b_first[n] + 1
            n += 1
        del self._b_first[:n], self._b_last[:n], self._b_seg[:n], self._b_off[:n], self._b_len[:n]
        return readings

    # -- files -------------------------------------------------------------------------------------------
    def _name(self, seg):
        return "%s/%d%s" % (self.path, seg, _SUFFIX)

    def _append(self, kind, head, tail):
        size = _FRAME + len(head) + (len(tail) if tail else 0)
        if self._f is None or self._size + size > self.segment_bytes:
            self._roll()
        while self._total + size > self.capacity and len(self._segs) > 1:
            self._evict_oldest()
        return self._write(kind, head, tail)

    def _write(self, kind, head, tail):
        # One write for the frame and small bodies; a bundle's bytes go in a second write (not copied).
        f = self._f
        assert f is not None
        n = len(head) + (len(tail) if tail else 0)
        first = bytearray(_HDR + len(head) + (0 if tail else 4))
        struct.pack_into("<BH", first, 0, kind, n)
        first[_HDR : _HDR + len(head)] = head
        crc = _crc(memoryview(first)[: _HDR + len(head)])
        if tail:
            crc = _crc(tail, crc)
            f.write(first)
            f.write(tail)
            f.write(struct.pack("<I", crc))
        else:
            struct.pack_into("<I", first, _HDR + len(head), crc)
            f.write(first)
        f.flush()  # littlefs commits at flush: the record is on flash before we go on
        off = self._size
        size = _FRAME + n
        self._size += size
        self._total += size
        self.bytes_written += size
        self.records_written += 1
        return self._segs[-1], off

    def _roll(self):
        if self._f is not None:
            self._f.close()
        seg = self._segs[-1] + 1 if self._segs else 0
        self._f = open(self._name(seg), "ab")
        self._segs.append(seg)
        self._size = 0
        self._write(_HEAD, self._chain + struct.pack("<II", self._dropped, self._floor), None)
        self._retire()

    def _evict_oldest(self):
        seg = self._segs[0]
        readings = self._drop_segment_entries(seg)
        self._write(_EVICT, struct.pack("<II", seg, readings), None)
        self._dropped += readings
        self.evicted_readings += readings
        self.evicted_segments += 1
        self._delete_front()

    def _retire(self):
        # delete the oldest segments while nothing in them is live (never the active one)
        while len(self._segs) > 1:
            seg = self._segs[0]
            if (self._r_seg and self._r_seg[0] <= seg) or (self._b_seg and self._b_seg[0] <= seg):
                return
            self._delete_front()
            self.retired_segments += 1

    def _delete_front(self):
        name = self._name(self._segs.pop(0))
        try:
            self._total -= os.stat(name)[6]
            os.remove(name)
        except OSError:
            pass

    def _read(self, seg, off, kind, skip):
        # the bytes after the first `skip` of a live record's body, checked again (None if it no longer reads
        # back intact); one allocation of their size
        f = self._open(seg)
        try:
            return self._read_from(f, off, kind, skip)
        finally:
            if f is not None:
                f.close()

    def _open(self, seg):
        try:
            return open(self._name(seg), "rb")
        except OSError:
            return None

    def _read_from(self, f, off, kind, skip):
        # _read on a segment file already open (None: it would not open)
        try:
            if f is None:
                raise OSError(0)
            f.seek(off)
            head = f.read(_HDR + skip)
            if len(head) != _HDR + skip or head[0] != kind:
                raise OSError(0)
            n = (head[1] | head[2] << 8) - skip
            data = f.read(n)
            tail = f.read(4)
        except OSError:
            self.corrupt += 1
            return None
        if len(data) != n or len(tail) != 4 or _crc(data, _crc(head)) != struct.unpack("<I", tail)[0]:
            self.corrupt += 1
            return None
        return data
