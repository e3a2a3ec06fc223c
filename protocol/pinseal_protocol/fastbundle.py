"""A fast path for the one byte layout honest devices produce, beside the generic decoder in `bundle`.

A receiver handling thousands of bundles per second spends most of its time, after the signature, in
generic strict decoding: cbor2 decodes, then the value is re-encoded to prove the bytes deterministic
(docs/protocol.md §2), then the SenML pack is walked into `Reading`/`Record` objects, and a gateway then
turns those into table rows. A device always writes one layout: tag 18, the protected header
{1: -8, 4: kid}, an empty unprotected map, the payload map with keys 1..7 in order, a 5-entry status,
and SenML records with labels among n, u, v/vs and bt. `parse` reads exactly that layout in one pass
over the bytes, checking every head is the shortest form and every map key in order as it goes.

`bundle.verify_bundle` tries it first. Its contract is one-sided: it returns a `Bundle` only when the
generic path would accept the same bytes (signature aside) with the same fields; anything else, including
every malformed, non-deterministic or merely unusual (but valid) input, returns None and goes to the
generic path, which alone decides rejections and their reasons. A property test holds the two paths to
that over generated and mutated bundles (protocol/tests/test_fastbundle.py).
"""

from __future__ import annotations

import hashlib

from pinseal_protocol.bundle import MAX_SIZE, MAX_UINT, Bundle, Row, Status

# d2: tag 18; 84: array(4); 55: bstr(21), the protected header a2 01 27 04 50 <kid>: {1: -8, 4: h'kid'}
_PREFIX = b"\xd2\x84\x55\xa2\x01\x27\x04\x50"
_KID_END = len(_PREFIX) + 16
_SIG_HEAD = b"\x58\x40"  # bstr(64)
_SIG_STRUCTURE_HEAD = b"\x84\x6aSignature1"  # ["Signature1", ...
_EMPTY_BSTR = b"\x40"

# Names and units repeat in every reading: their short encodings (head + UTF-8) map to the decoded text.
# Bounded, so a flood of distinct names cannot grow it without limit.
_TEXTS: dict[bytes, str] = {}
_TEXTS_MAX = 4096


class _Slow(Exception):
    """The bytes leave the fast layout: the generic path decides."""


def _arg(data: bytes, pos: int) -> tuple[int, int, int]:
    """(major type, argument, next position) of the head at `pos`; _Slow unless the shortest form."""
    byte = data[pos]
    info = byte & 0x1F
    if info < 24:
        return byte >> 5, info, pos + 1
    if info == 24:
        value = data[pos + 1]
        if value < 24:
            raise _Slow
        return byte >> 5, value, pos + 2
    if info == 25:
        end = pos + 3
        value = int.from_bytes(data[pos + 1 : end], "big")
        if value < 0x100:
            raise _Slow
    elif info == 26:
        end = pos + 5
        value = int.from_bytes(data[pos + 1 : end], "big")
        if value < 0x10000:
            raise _Slow
    elif info == 27:
        end = pos + 9
        value = int.from_bytes(data[pos + 1 : end], "big")
        if value < 0x100000000:
            raise _Slow
    else:
        raise _Slow  # indefinite lengths, simple values, floats, reserved
    if end > len(data):
        raise _Slow
    return byte >> 5, value, end


def _uint(data: bytes, pos: int) -> tuple[int, int]:
    major, value, pos = _arg(data, pos)
    if major != 0:
        raise _Slow
    return value, pos


def _int(data: bytes, pos: int) -> tuple[int, int]:
    major, value, pos = _arg(data, pos)
    if major == 0:
        return value, pos
    if major == 1:
        return -1 - value, pos
    raise _Slow


def _text(data: bytes, pos: int) -> tuple[str, int]:
    major, length, pos = _arg(data, pos)
    end = pos + length
    if major != 3 or end > len(data):
        raise _Slow
    try:
        return data[pos:end].decode("utf-8"), end
    except UnicodeDecodeError:
        raise _Slow from None


def parse(data: bytes) -> Bundle | None:
    """The bundle's fields if `data` has the device layout exactly, else None (use the generic path).

    Checks structure and encoding only, not the signature: the caller verifies `signature` over
    `signed` (the COSE Sig_structure) against the key registered for `kid` before trusting the rest.
    """
    try:
        return _parse(bytes(data))
    except (_Slow, IndexError):
        return None


def _parse(data: bytes) -> Bundle | None:
    size = len(data)
    if size > MAX_SIZE or not data.startswith(_PREFIX) or data[_KID_END] != 0xA0:
        return None
    major, length, start = _arg(data, _KID_END + 1)
    end = start + length
    if major != 2 or end + 66 != size or data[end : end + 2] != _SIG_HEAD:
        return None
    # Payload {1: 1, 2: boot, 3: seq, 4: prev, 5: status, 6: time source, 7: readings}, keys in order.
    if data[start : start + 4] != b"\xa7\x01\x01\x02":
        return None
    boot, pos = _uint(data, start + 4)
    if data[pos] != 0x03:
        return None
    seq, pos = _uint(data, pos + 1)
    if data[pos : pos + 2] != b"\x04\x50":
        return None
    prev = data[pos + 2 : pos + 18]
    if data[pos + 18 : pos + 20] != b"\x05\x85":
        return None
    battery, pos = _uint(data, pos + 20)
    rssi, pos = _int(data, pos)
    uptime, pos = _uint(data, pos)
    dropped, pos = _uint(data, pos)
    reset_cause, pos = _uint(data, pos)
    if data[pos] != 0x06 or data[pos + 1] > 2 or data[pos + 2] != 0x07:
        return None
    time_source = data[pos + 1]
    major, count, pos = _arg(data, pos + 3)
    if major != 4 or count == 0:
        return None
    rows: list[Row] = []
    index = -1
    time = seq_of_reading = 0
    kid = data[len(_PREFIX) : _KID_END]
    bundle_hash = hashlib.sha256(data).digest()
    times: list[int] = []
    texts = _TEXTS
    for _ in range(count):
        head = data[pos]
        if not 0xA2 <= head <= 0xA4 or data[pos + 1] != 0x00:
            return None
        entries = head - 0xA1
        # n, and u if present: short texts (the common case) decoded once per distinct byte string.
        byte = data[pos + 2]
        if 0x60 <= byte < 0x78:
            stop = pos + 3 + byte - 0x60
            raw = data[pos + 2 : stop]
            name = texts.get(raw)
            if name is None:
                name, _ = _text(data, pos + 2)
                if len(texts) < _TEXTS_MAX:
                    texts[raw] = name
            pos = stop
        else:
            name, pos = _text(data, pos + 2)
        unit = value = error = None
        key = data[pos]
        if key == 0x01:
            byte = data[pos + 1]
            if 0x60 <= byte < 0x78:
                stop = pos + 2 + byte - 0x60
                raw = data[pos + 1 : stop]
                unit = texts.get(raw)
                if unit is None:
                    unit, _ = _text(data, pos + 1)
                    if len(texts) < _TEXTS_MAX:
                        texts[raw] = unit
                pos = stop
            else:
                unit, pos = _text(data, pos + 1)
            entries -= 1
            key = data[pos]
        if key == 0x02:
            byte = data[pos + 1]
            if byte == 0xC4:  # tag 4: decimal fraction [exponent, mantissa]
                if data[pos + 2] != 0x82:
                    return None
                byte = data[pos + 3]
                if byte < 0x18:
                    exponent, pos = byte, pos + 4
                elif 0x20 <= byte < 0x38:
                    exponent, pos = 0x1F - byte, pos + 4
                else:
                    exponent, pos = _int(data, pos + 3)
                byte = data[pos]
                if byte == 0x19:  # the common driver output: a 2-byte mantissa
                    mantissa = (data[pos + 1] << 8) | data[pos + 2]
                    if mantissa < 0x100:
                        return None
                    pos += 3
                else:
                    mantissa, pos = _int(data, pos)
                value = f"{mantissa}e{exponent}"
            else:
                number, pos = _int(data, pos + 1)
                value = str(number)
        elif key == 0x03:
            error, pos = _text(data, pos + 1)
        else:
            return None
        entries -= 1
        if entries == 1:
            if data[pos] != 0x22:  # bt (-3): this record starts a reading
                return None
            if data[pos + 1] == 0x1A:  # a Unix time: 4 bytes
                time = int.from_bytes(data[pos + 2 : pos + 6], "big")
                if time < 0x10000:
                    return None
                pos += 6
            else:
                time, pos = _uint(data, pos + 1)
            index += 1
            seq_of_reading = seq + index
            times.append(time)
        elif entries != 0 or index < 0:
            return None  # leftover labels, or a pack not starting with bt
        rows.append((bundle_hash, kid, seq_of_reading, time, name, unit, value, error))
    if pos != end:
        return None
    n_readings = index + 1
    last_seq = seq + n_readings - 1
    if last_seq > MAX_UINT:
        return None
    return Bundle(  # positional: a keyword call costs twice as much, once per bundle
        kid,
        boot,
        seq,
        n_readings,
        last_seq,
        prev,
        Status(battery, rssi, uptime, dropped, reset_cause),
        time_source,
        tuple(rows),
        min(times),
        max(times),
        bundle_hash,
        data,
        _SIG_STRUCTURE_HEAD + data[2:_KID_END] + _EMPTY_BSTR + data[_KID_END + 1 : end],
        data[end + 2 :],
    )
