# Boot recovery of the flash outbox (pinseal.outbox; the record format and the replay rules are described
# there): scan the segment files, replay their records into the outbox's in-RAM index, resync past a
# corrupt record, cut a torn tail. It runs once per boot, so it is its own module: Outbox() imports it,
# runs recover() and drops it, and on a board that loads code into RAM (.mpy files on a stock image) its
# ~2 KB of bytecode is not held for the rest of the run.
import binascii
import hashlib
import os
import struct

from micropython import const

# The record format, as in pinseal.outbox (hil_tests/tests/test_outbox_format.py keeps the two equal).
_HEAD = const(0x48)
_READING = const(0x52)
_BUNDLE = const(0x42)
_ACK = const(0x41)
_EVICT = const(0x44)
_LOST = const(0x4C)
_FRAME = const(7)  # kind, length, CRC
_HDR = const(3)
_MAX_BODY = const(4096)
_BUNDLE_META = const(12)
_CHAIN = const(16)
_U32 = const(0xFFFFFFFF)
_KINDS = b"HRBADL"
_SUFFIX = ".seg"


def _crc(data, crc=0):
    return binascii.crc32(data, crc) & _U32


def recover(ob):
    try:
        names = os.listdir(ob.path)
    except OSError:
        os.mkdir(ob.path)
        names = []
    segs = []
    for name in names:
        if name.endswith(_SUFFIX):
            try:
                segs.append(int(name[: -len(_SUFFIX)]))
            except ValueError:
                pass
        elif name.endswith(".tmp"):
            os.remove(ob.path + "/" + name)  # an interrupted tail repair; its segment is intact
    segs.sort()
    buf = bytearray(_HDR + _MAX_BODY + 4)  # one record at a time, only while recovering
    for i in range(len(segs)):
        _scan(ob, segs[i], i == 0, i == len(segs) - 1, buf)
    buf = None
    # finish evictions a power cut interrupted: the segments an evict record names are gone
    for seg in ob._evicted:
        while ob._segs and ob._segs[0] <= seg:
            ob._delete_front()
    ob._evicted = []
    if ob._segs:
        ob._f = open(ob._name(ob._segs[-1]), "ab")
    # corrupt records not yet accounted for: count their readings once, durably
    for seg, off, readings in ob._lost:
        ob._append(_LOST, struct.pack("<III", seg, off, readings), None)
        ob._dropped += readings
    ob._lost = []
    ob._retire()


def _scan(ob, seg, first, last, buf):
    name = ob._name(seg)
    size = os.stat(name)[6]
    mv = memoryview(buf)
    ob._segs.append(seg)
    ob._total += size
    ob._size = size
    off = 0
    with open(name, "rb") as f:
        while off < size:
            n = _parse(ob, f, off, size, mv)
            if n:
                _replay(ob, mv, n, seg, off, first and off == 0)
                off += n
                continue
            # not a valid record: is there a valid one further on in this segment?
            nxt = _resync(ob, f, off + 1, size, mv)
            if nxt >= size and last:
                break  # a torn last write
            ob.corrupt += 1
            _corrupt_at(ob, seg, off)
            off = nxt
    if off < size or size == 0:  # (an empty segment: its head record was the torn write)
        _cut(ob, seg, off, mv)


def _resync(ob, f, pos, size, mv):
    # the offset of the next valid record after a bad one (size if none): only bytes that are a
    # record kind are tried, found 64 bytes at a time in a buffer of their own
    win = bytearray(64)
    while pos + _FRAME <= size:
        f.seek(pos)
        n = f.readinto(win)
        if not n:
            break
        for j in range(n):
            if win[j] in _KINDS and _parse(ob, f, pos + j, size, mv):
                return pos + j
        pos += n
    return size


def _parse(ob, f, off, size, mv):
    # length of a valid record at `off` (its bytes in mv), 0 if there is none
    if size - off < _FRAME:
        return 0
    f.seek(off)
    if f.readinto(mv[:_HDR]) != _HDR or mv[0] not in _KINDS:
        return 0
    n = mv[1] | mv[2] << 8
    if n > _MAX_BODY or size - off < _FRAME + n:
        return 0
    if f.readinto(mv[_HDR : _HDR + n + 4]) != n + 4:
        return 0
    crc = _crc(mv[: _HDR + n])
    if crc != struct.unpack_from("<I", mv, _HDR + n)[0]:
        return 0
    return _FRAME + n


def _replay(ob, mv, size, seg, off, first):
    kind = mv[0]
    body = mv[_HDR : size - 4]
    if kind == _READING:
        seq = struct.unpack_from("<I", body, 0)[0]
        if seq >= ob._floor:
            ob._r_seq.append(seq)
            ob._r_seg.append(seg)
            ob._r_off.append(off)
            ob._floor = seq + 1
    elif kind == _BUNDLE:
        first_seq, last_seq, reported = struct.unpack_from("<III", body, 0)
        if ob._b_last and first_seq <= ob._b_last[-1]:
            return  # out of order: only a damaged log could hold it
        ob._apply_bundle(first_seq, last_seq, reported, hashlib.sha256(body[_BUNDLE_META:]).digest()[:_CHAIN])
        ob._b_first.append(first_seq)
        ob._b_last.append(last_seq)
        ob._b_seg.append(seg)
        ob._b_off.append(off)
        ob._b_len.append(len(body) - _BUNDLE_META)
    elif kind == _ACK:
        ob._apply_ack(struct.unpack_from("<I", body, 0)[0])
    elif kind == _HEAD:
        if first:  # the state before the oldest segment; later heads repeat what replay knows
            ob._chain = bytes(body[:_CHAIN])
            ob._dropped, ob._floor = struct.unpack_from("<II", body, _CHAIN)
    elif kind == _EVICT:
        evicted, readings = struct.unpack_from("<II", body, 0)
        ob._drop_segment_entries(evicted)
        ob._dropped += readings
        ob._evicted.append(evicted)
    elif kind == _LOST:
        lseg, loff, readings = struct.unpack_from("<III", body, 0)
        for i in range(len(ob._lost)):
            if ob._lost[i][0] == lseg and ob._lost[i][1] == loff:
                del ob._lost[i]
                break
        ob._dropped += readings


def _corrupt_at(ob, seg, off):
    # the unreadable record may have been the bundle sealing the readings pending so far: give them up
    n = len(ob._r_seq)
    ob._pop_readings(n)
    ob._lost.append((seg, off, n))


def _cut(ob, seg, keep, mv):
    # drop a torn tail: copy the segment's valid prefix, then rename it over the segment
    ob.torn += 1
    name = ob._name(seg)
    ob._total -= ob._size - keep
    ob._size = keep
    if keep == 0:  # only a torn head: the segment goes, the one before is the active one again
        os.remove(name)
        ob._segs.pop()
        ob._size = os.stat(ob._name(ob._segs[-1]))[6] if ob._segs else 0
        return
    tmp = ob.path + "/cut.tmp"
    with open(name, "rb") as src, open(tmp, "wb") as dst:
        done = 0
        while done < keep:
            n = src.readinto(mv[: min(len(mv), keep - done)])
            dst.write(mv[:n])
            done += n
    ob.bytes_written += keep
    try:
        os.rename(tmp, name)
    except OSError:  # a port that will not rename over a file
        os.remove(name)
        os.rename(tmp, name)
