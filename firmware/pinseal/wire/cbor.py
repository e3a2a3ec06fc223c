# Deterministic CBOR (RFC 8949 §4.2.1) for the subset pinseal uses: ints (up to 64 bits), byte and text
# strings, arrays, maps, tags, true/false/null. No floats anywhere (docs/protocol.md §2): boards have
# single-precision floats, so a float could never be re-encoded to the same bytes everywhere.
#
# The encoder writes into one growable buffer (doubling, so a 2 KB bundle costs a handful of
# allocations, not one per byte). The decoder reads untrusted bytes from the network: it accepts only
# the deterministic encoding, bounds depth and container sizes, never allocates more than the input
# can justify, and raises WireError (a ValueError) for anything else.
from micropython import const

from pinseal.wire import WireError

_UINT = const(0)
_NINT = const(1)
_BYTES = const(2)
_TEXT = const(3)
_ARRAY = const(4)
_MAP = const(5)
_TAG = const(6)
_SIMPLE = const(7)

TAG_DECIMAL_FRACTION = const(4)
TAG_COSE_SIGN1 = const(18)

# Decoder limits. Acks nest 3 deep and hold 5 keys; these leave room for future fields while keeping
# a hostile message from exhausting the stack or the heap.
MAX_DEPTH = const(16)
MAX_ITEMS = const(256)

_MAX_UINT64 = 0xFFFFFFFFFFFFFFFF  # a long int: const() only folds small ints


class Tag:
    """A tagged item, e.g. Tag(4, [-2, 2150]) (decimal fraction) or Tag(18, [...]) (COSE_Sign1)."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


def _error(detail):
    return WireError("malformed", detail)


def _nondet(detail):
    return WireError("non_deterministic", detail)


# ---------------------------------------------------------------------------------------------- encode


class Encoder:
    """Appends deterministic CBOR to a buffer; `value()` returns the bytes written.

    Callers that know their layout (senml, bundle) write heads and items directly, in key order, so
    no dicts are built; `encode()` handles any supported Python value, sorting map keys itself.
    """

    def __init__(self, size=64):
        self.buf = bytearray(size)
        self.pos = 0

    def _reserve(self, n):
        need = self.pos + n
        size = len(self.buf)
        if need > size:
            while size < need:
                size *= 2
            grown = bytearray(size)
            grown[: self.pos] = memoryview(self.buf)[: self.pos]
            self.buf = grown

    def value(self):
        return bytes(memoryview(self.buf)[: self.pos])

    def view(self):
        """The bytes written, without a copy; valid until the next write."""
        return memoryview(self.buf)[: self.pos]

    def byte(self, b):
        self._reserve(1)
        self.buf[self.pos] = b
        self.pos += 1

    def raw(self, data):
        """Writes bytes that are already CBOR (e.g. a header encoded once)."""
        n = len(data)
        self._reserve(n)
        self.buf[self.pos : self.pos + n] = data
        self.pos += n

    def head(self, major, n):
        """Major type and argument in the shortest form (RFC 8949 §4.2.1)."""
        mt = major << 5
        if n < 24:
            self.byte(mt | n)
            return
        if n < 0x100:
            k = 1
            mt |= 24
        elif n < 0x10000:
            k = 2
            mt |= 25
        elif n < 0x100000000:
            k = 4
            mt |= 26
        elif n <= _MAX_UINT64:
            k = 8
            mt |= 27
        else:
            raise ValueError("CBOR: integer beyond 64 bits")
        self._reserve(k + 1)
        buf = self.buf
        p = self.pos
        buf[p] = mt
        i = p + k
        while i > p:
            buf[i] = n & 0xFF
            n >>= 8
            i -= 1
        self.pos = p + k + 1

    def integer(self, n):
        if n >= 0:
            self.head(_UINT, n)
        else:
            self.head(_NINT, -1 - n)

    def bstr(self, data):
        self.head(_BYTES, len(data))
        self.raw(data)

    def tstr(self, s):
        data = s.encode()
        self.head(_TEXT, len(data))
        self.raw(data)

    def array(self, n):
        """Starts an array of n items; the caller then writes the items."""
        self.head(_ARRAY, n)

    def map(self, n):
        """Starts a map of n pairs; the caller writes them in deterministic key order."""
        self.head(_MAP, n)

    def tag(self, n):
        self.head(_TAG, n)

    def encode(self, obj):
        # bool before int: in CPython True is an int, and it must be encoded as true, not 1
        if obj is None:
            self.byte(0xF6)
        elif obj is True:
            self.byte(0xF5)
        elif obj is False:
            self.byte(0xF4)
        else:
            t = type(obj)
            if t is int:
                self.integer(obj)
            elif t is bytes or t is bytearray or t is memoryview:
                self.bstr(obj)
            elif t is str:
                self.tstr(obj)
            elif t is list or t is tuple:
                self.head(_ARRAY, len(obj))
                for item in obj:
                    self.encode(item)
            elif t is dict:
                self._dict(obj)
            elif t is Tag:
                self.head(_TAG, obj.tag)
                self.encode(obj.value)
            elif t is float:
                raise ValueError("CBOR: floats are not allowed (docs/protocol.md §2)")
            else:
                raise ValueError("CBOR: cannot encode " + t.__name__)

    def _dict(self, d):
        # Keys sort by their encoded bytes (RFC 8949 §4.2.1). Each key is encoded at the end of the
        # buffer, copied out, and the position rewound: one small bytes object per key, no encoder.
        entries = []
        start = self.pos
        for key in d:
            if type(key) not in (int, str, bytes):
                raise ValueError("CBOR: map keys must be int, str or bytes")
            self.encode(key)
            entries.append((bytes(memoryview(self.buf)[start : self.pos]), key))
            self.pos = start
        entries.sort(key=_first)
        self.head(_MAP, len(entries))
        prev = None
        for encoded, key in entries:
            if encoded == prev:
                raise ValueError("CBOR: duplicate map key")
            prev = encoded
            self.raw(encoded)
            self.encode(d[key])


def _first(entry):
    return entry[0]


def dumps(obj, size=64):
    """The deterministic encoding of obj."""
    enc = Encoder(size)
    enc.encode(obj)
    return enc.value()


# ---------------------------------------------------------------------------------------------- decode


class _Decoder:
    def __init__(self, data, max_depth, max_items):
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.max_depth = max_depth
        self.max_items = max_items

    def item(self, depth):
        data = self.data
        p = self.pos
        end = self.end
        if p >= end:
            raise _error("truncated")
        ib = data[p]
        p += 1
        major = ib >> 5
        ai = ib & 31
        if ai < 24:
            n = ai
        elif ai < 28:
            k = 1 << (ai - 24)
            if k > end - p:
                raise _error("truncated")
            if major == _SIMPLE:
                if ai == 24:
                    raise _error("unsupported simple value")
                raise _nondet("floating-point value")
            n = 0
            for i in range(p, p + k):
                n = (n << 8) | data[i]
            p += k
            # shortest form: 1 extra byte only for >= 24, 2 for >= 2**8, 4 for >= 2**16, 8 for >= 2**32
            if n < (24 if ai == 24 else 1 << (4 << (ai - 24))):
                raise _nondet("integer or length not in shortest form")
        elif ai == 31:
            if _BYTES <= major <= _MAP:
                raise _nondet("indefinite length")
            raise _error("unexpected break" if major == _SIMPLE else "reserved additional info 31")
        else:
            raise _error("reserved additional info")
        self.pos = p

        if major == _UINT:
            return n
        if major == _NINT:
            return -1 - n
        if major == _BYTES or major == _TEXT:
            if n > end - p:
                raise _error("truncated string")
            self.pos = p + n
            if major == _BYTES:
                return bytes(data[p : p + n])
            _check_utf8(data, p, p + n)
            return str(bytes(data[p : p + n]), "utf-8")
        if major == _SIMPLE:
            if n == 20:
                return False
            if n == 21:
                return True
            if n == 22:
                return None
            raise _error("unsupported simple value")
        depth += 1
        if depth > self.max_depth:
            raise _error("nested too deeply")
        if major == _TAG:
            value = self.item(depth)
            if n == TAG_DECIMAL_FRACTION:
                if (
                    type(value) is not list
                    or len(value) != 2
                    or type(value[0]) is not int
                    or type(value[1]) is not int
                ):
                    raise _error("decimal fraction is not [int, int]")
            elif n == 2 or n == 3:
                # bignums have their own preferred-serialization rules; pinseal never uses them
                raise _error("bignums are not supported")
            return Tag(n, value)
        # array or map: every item takes at least one byte, so a count the input cannot hold is
        # rejected before anything is allocated for it
        if n > self.max_items:
            raise _error("too many items")
        if (n if major == _ARRAY else 2 * n) > end - p:
            raise _error("truncated container")
        if major == _ARRAY:
            items = []
            for _ in range(n):
                items.append(self.item(depth))
            return items
        result = {}
        prev_key = None
        for _ in range(n):
            start = self.pos
            key = self.item(depth)
            if type(key) not in (int, str, bytes):
                # also keeps unhashable keys (arrays, maps) away from the dict
                raise _error("map key must be int, text or bytes")
            encoded_key = bytes(data[start : self.pos])
            if prev_key is not None and encoded_key <= prev_key:
                raise _nondet("duplicate map key" if encoded_key == prev_key else "map keys not sorted")
            prev_key = encoded_key
            result[key] = self.item(depth)
        return result


def _check_utf8(data, p, end):
    # MicroPython's decoder lets overlong forms and surrogates through; RFC 3629 does not.
    while p < end:
        b = data[p]
        p += 1
        if b < 0x80:
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= b <= 0xDF:
            n = 1
        elif 0xE0 <= b <= 0xEF:
            n = 2
            if b == 0xE0:
                lo = 0xA0
            elif b == 0xED:
                hi = 0x9F
        elif 0xF0 <= b <= 0xF4:
            n = 3
            if b == 0xF0:
                lo = 0x90
            elif b == 0xF4:
                hi = 0x8F
        else:
            raise _error("invalid UTF-8")
        if n > end - p:
            raise _error("invalid UTF-8")
        c = data[p]
        if c < lo or c > hi:
            raise _error("invalid UTF-8")
        for i in range(p + 1, p + n):
            c = data[i]
            if c < 0x80 or c > 0xBF:
                raise _error("invalid UTF-8")
        p += n


def loads(data, max_depth=MAX_DEPTH, max_items=MAX_ITEMS):
    """Decodes exactly one deterministically encoded item that fills all of data.

    Raises WireError (a ValueError) with reason "malformed" (not well-formed, truncated, trailing
    bytes, unsupported content, over the limits) or "non_deterministic" (well-formed but not the
    deterministic encoding). Byte strings come back as bytes, text as str, arrays as lists, maps as
    dicts, tags as Tag.
    """
    if type(data) is not memoryview:
        data = memoryview(data)
    dec = _Decoder(data, max_depth, max_items)
    obj = dec.item(0)
    if dec.pos != dec.end:
        raise _error("trailing bytes")
    return obj
