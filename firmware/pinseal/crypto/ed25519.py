# Ed25519 (RFC 8032 section 5.1) in plain MicroPython, for a device that must keep its asyncio loop
# responsive while it signs.
#
# Every long computation is a generator that yields at checkpoints a fraction of a millisecond apart
# (in the MicroPython VM on a desktop; proportionally longer on a board). The synchronous API runs the
# generator to its end; the async API awaits asyncio.sleep_ms(0) at every yield. `SigningKey.sign_steps`
# and `verify_steps` are public so that callers (and the benchmark) can drive or time the slices.
#
# Where the time goes, and why the code looks as it does:
# - SHA-512 (pinseal.crypto.sha512) is most of a signature; it is written for few big-integer operations.
# - r*B uses a signed Lim-Lee comb: 5 teeth 52 bits apart, 4 sub-combs 13 bits apart, so a fixed-base
#   multiplication is 12 doublings and 51 mixed additions against a table of 64 affine points
#   ((y+x, y-x, 2dxy)). The table is 6 KB of bytes constants (pinseal.crypto.comb_table*, generated on
#   the host): from ROMFS it takes no heap; built at boot it held 11.9 KB of big integers for good and its
#   construction was the firmware's high-water mark. Every comb digit is +-1, so each sub-comb needs
#   only 16 entries (the other 16 are their negatives) and no conditional additions are skipped.
#   A board that loads its code into RAM (.mpy files on a stock image) can use 2 sub-combs 26 bits apart
#   (3 KB of table, 25 doublings) or 1 (1.5 KB, 51 doublings): `use_comb`, from the board profile.
# - Field inversion is an addition chain (254 squarings, 11 multiplications) rather than pow(), so it
#   can yield part-way.
# - The key's expanded scalar, prefix and public key are derived once, in the constructor.
from micropython import const

from pinseal.crypto.sha512 import sha512
from pinseal.crypto.steps import run, run_async

_P = const(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFED)
_L = const(0x1000000000000000000000000000000014DEF9DEA2F79CD65812631A5CF5D3ED)
_D = const(0x52036CEE2B6FFE738CC740797779E89800700A4D4141D8AB75EB4DCA135978A3)
_D2 = const(0x2406D9DC56DFFCE7198E80F2EEF3D13000E0149A8283B156EBD69B9426B2F159)
_SQRTM1 = const(0x2B8324804FC1DF0B2B4D00993DFBD7A72F431806AD2FE478C4EE1B274A0EA0B0)
_BX = const(0x216936D3CD6E53FEC0A4E231FDD6DC5C692CC7609525A7B2C9562D608F25D51A)
_BY = const(0x6666666666666666666666666666666666666666666666666666666666666658)
_MASK255 = const(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF)

# Comb geometry: teeth * tooth_gap >= 254 bits, the size of an odd scalar below 2L. Sub-combs: 4, 2 or 1
# (use_comb), each spanning _GAP / sub-combs columns, the bits between two sub-combs.
_GAP = const(52)  # bits between teeth
_NBITS = const(260)  # 5 teeth * _GAP
_ROW_BYTES = const(1536)  # a sub-comb's table: 2**(teeth - 1) entries of 96 bytes
_COMB_OPS = const(8)  # point operations between yields in the comb (about 0.3 ms in the VM)

# Squarings between yields in an exponentiation (about 0.1 ms in the VM). Each leaves ~130 B of big-integer
# garbage, and a board that collects only between task steps (the RAM model) must hold a run's worth on
# top of what is live: 100 a run was 13 KB, which a 100 KB board signing at its peak did not have.
_SQ_RUN = const(25)

# ---------------------------------------------------------------------------------------------------
# Field: exponentiation by addition chains, so that they can yield.


def _sqn(x, n):
    """Generator: x**(2**n) mod p, yielding after every _SQ_RUN squarings and after the last."""
    p = _P
    while n:
        k = n if n < _SQ_RUN else _SQ_RUN
        for _ in range(k):
            x = x * x % p
        n -= k
        yield
    return x


def _pow_2_250_1(z):
    """Generator: returns (z**(2**250 - 1), z**11), the common trunk of inversion and square root."""
    p = _P
    z2 = z * z % p
    z9 = z2 * z2 % p
    z9 = z9 * z9 % p * z % p
    z11 = z9 * z2 % p
    t = z11 * z11 % p * z9 % p  # 2^5 - 1
    t5 = t
    t = (yield from _sqn(t, 5)) * t5 % p  # 2^10 - 1
    t10 = t
    t = (yield from _sqn(t, 10)) * t10 % p  # 2^20 - 1
    t = (yield from _sqn(t, 20)) * t % p  # 2^40 - 1
    t = (yield from _sqn(t, 10)) * t10 % p  # 2^50 - 1
    t50 = t
    t = (yield from _sqn(t, 50)) * t50 % p  # 2^100 - 1
    t = (yield from _sqn(t, 100)) * t % p  # 2^200 - 1
    t = (yield from _sqn(t, 50)) * t50 % p  # 2^250 - 1
    return t, z11


def _inv(z):
    """Generator: z**(p-2) = 1/z mod p (p - 2 = 2^255 - 21 = (2^250 - 1) * 2^5 + 11)."""
    t, z11 = yield from _pow_2_250_1(z)
    return (yield from _sqn(t, 5)) * z11 % _P


def _pow_p58(z):
    """Generator: z**((p-5)/8) mod p ((p - 5) / 8 = (2^250 - 1) * 4 + 1)."""
    t, _ = yield from _pow_2_250_1(z)
    return (yield from _sqn(t, 2)) * z % _P


# ---------------------------------------------------------------------------------------------------
# Points: extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z (RFC 8032 section 5.1.4).


def _add(p1, p2):
    X1, Y1, Z1, T1 = p1
    X2, Y2, Z2, T2 = p2
    p = _P
    a = (Y1 - X1) * (Y2 - X2) % p
    b = (Y1 + X1) * (Y2 + X2) % p
    c = T1 * _D2 % p * T2 % p
    d = 2 * Z1 * Z2 % p
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def _dbl(p1):
    X, Y, Z, _ = p1
    p = _P
    a = X * X % p
    b = Y * Y % p
    c = 2 * Z * Z % p
    h = a + b
    e = h - (X + Y) * (X + Y) % p
    g = a - b
    f = c + g
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def _neg(p1):
    X, Y, Z, T = p1
    return ((-X) % _P, Y, Z, (-T) % _P)


def _encode(X, Y, Z):
    """Generator: the 32-byte encoding of a point (RFC 8032 section 5.1.2)."""
    zi = yield from _inv(Z)
    x = X * zi % _P
    y = Y * zi % _P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _decode(s):
    """Generator: the point (x, y) encoded by s, or None if s is not a canonical encoding of a point."""
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= _MASK255
    if y >= _P:
        return None
    p = _P
    y2 = y * y % p
    u = (y2 - 1) % p
    v = (_D * y2 + 1) % p
    v3 = v * v % p * v % p
    w = yield from _pow_p58(u * v3 % p * v3 % p * v % p)
    x = u * v3 % p * w % p
    vx2 = v * x % p * x % p
    if vx2 != u:
        if (vx2 + u) % p:
            return None
        x = x * _SQRTM1 % p
    if x & 1 != sign:
        if not x:
            return None
        x = p - x
    return (x, y)


# ---------------------------------------------------------------------------------------------------
# Fixed-base multiplication by B: the comb.


_subs = 4  # sub-combs of the comb (use_comb)
_tables = None  # their tables, loaded at the first multiplication


def use_comb(subs):
    """Size the fixed-base comb: 4 sub-combs (6 KB of table), 2 (3 KB) or 1 (1.5 KB); fewer take more
    doublings per multiplication (12, 25, 51 for 51 or 52 additions). Call before the first signature: a
    table already loaded stays (the modules are dropped only if nothing else holds them)."""
    global _subs, _tables
    if subs not in (1, 2, 4):
        raise ValueError("comb sub-combs: 1, 2 or 4")
    if subs != _subs:
        _subs, _tables = subs, None


def _load_tables():
    """The sub-combs' tables in shift order (sub-comb g at g * _GAP / _subs bits): memoryviews of the
    generated constants, of which only the modules this comb size needs are imported."""
    from pinseal.crypto.comb_table import TABLE as t0

    tabs = [memoryview(t0)]
    if _subs > 1:
        from pinseal.crypto.comb_table_2 import TABLE as t2

        tabs.append(memoryview(t2))
        if _subs == 4:
            from pinseal.crypto.comb_table_4 import TABLE as t13

            t13 = memoryview(t13)
            tabs = [tabs[0], t13[:_ROW_BYTES], tabs[1], t13[_ROW_BYTES:]]
    return tabs


def _comb(k, want_t):
    """Generator: k*B in extended coordinates, 0 <= k < L; T is computed only if want_t."""
    global _tables
    if _tables is None:
        _tables = _load_tables()
    tabs = _tables
    subs = len(tabs)
    span = _GAP // subs
    fb = int.from_bytes
    p = _P
    if not k & 1:
        k += _L  # same point, and odd: every odd k < 2^n is a sum of +-2^i for i < n
    b = (k + (1 << _NBITS) - 1) >> 1  # bit i of b set <=> digit i of k is +1
    # ch[5 g + t]: the span bits of b under tooth t of sub-comb g (small ints up to 2 sub-combs' 26 bits)
    chunk = (1 << span) - 1
    ch = [(b >> (_GAP * t + span * g)) & chunk for g in range(subs) for t in range(5)]
    X = Y = Z = T = 0
    first = True
    ops = 0
    last = subs - 1
    for c in range(span - 1, -1, -1):
        if not first:
            # Doubling (RFC 8032 section 5.1.4); T is needed by the mixed addition that follows.
            a = X * X % p
            bb = Y * Y % p
            cc = Z * Z % p
            cc += cc
            h = a + bb
            e = h - (X + Y) * (X + Y) % p
            g = a - bb
            f = cc + g
            X = e * f % p
            Y = g * h % p
            Z = f * g % p
            T = e * h % p
        for sc in range(subs):
            j = 5 * sc
            i = (
                ((ch[j] >> c) & 1)
                | ((ch[j + 1] >> c) & 1) << 1
                | ((ch[j + 2] >> c) & 1) << 2
                | ((ch[j + 3] >> c) & 1) << 3
            )
            neg = not (ch[j + 4] >> c) & 1
            if neg:
                i ^= 15
            tab = tabs[sc]
            o = i * 96
            yp = fb(tab[o : o + 32], "little")
            ym = fb(tab[o + 32 : o + 64], "little")
            t2 = fb(tab[o + 64 : o + 96], "little")
            if first:
                # The mixed addition to the identity (0, 1, 1, 0) collapses to X = 2E, Y = 2H, Z = 4,
                # T = EH with E = 2x, H = 2y: one multiplication instead of seven.
                if neg:
                    e = ym - yp
                else:
                    e = yp - ym
                h = yp + ym
                X = e + e
                Y = h + h
                Z = 4
                T = e * h % p
                first = False
                continue
            if neg:
                yp, ym = ym, yp
            a = (Y - X) * ym % p
            bb = (Y + X) * yp % p
            cc = T * t2 % p
            dd = Z + Z
            if neg:
                f = dd + cc
                g = dd - cc
            else:
                f = dd - cc
                g = dd + cc
            e = bb - a
            h = bb + a
            X = e * f % p
            Y = g * h % p
            Z = f * g % p
            if want_t or c or sc != last:
                T = e * h % p
        ops += subs + 1
        if ops >= _COMB_OPS and c:
            ops = 0
            yield  # the last column runs on into what follows
    return (X, Y, Z, T)


# ---------------------------------------------------------------------------------------------------
# Variable-base multiplication (verification only): signed 4-bit windows.


def _cached(p1):
    X, Y, Z, T = p1
    return ((Y + X) % _P, (Y - X) % _P, 2 * Z % _P, T * _D2 % _P)


def _add_cached(p1, q, neg):
    X1, Y1, Z1, T1 = p1
    yp, ym, z2, t2 = q
    p = _P
    if neg:
        yp, ym = ym, yp
    a = (Y1 - X1) * ym % p
    b = (Y1 + X1) * yp % p
    c = T1 * t2 % p
    d = Z1 * z2 % p
    if neg:
        f = d + c
        g = d - c
    else:
        f = d - c
        g = d + c
    e = b - a
    h = b + a
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def _mul(k, pt):
    """Generator: k*pt for 0 <= k < 2^253 and pt in extended coordinates.

    The window table (pt..8pt in cached form) is kept as 1 KB of bytes rather than 32 big integers
    (~1.8 KB), and the digits as a bytearray rather than a list (~200 B): verification runs at the app's
    heap high-water mark, and the integers are rebuilt per addition for less than the heap they saved.
    """
    tab = bytearray(1024)
    c1 = _cached(pt)
    q = pt
    for i in range(8):
        if i:
            q = _add_cached(q, c1, False)
        o = i * 128
        for v in _cached(q):
            tab[o : o + 32] = v.to_bytes(32, "little")
            o += 32
        yield
    c1 = None
    tab = memoryview(tab)
    # Digits in [-8, 8) of k in radix 16, least significant first, stored plus 8.
    digits = bytearray(64)
    carry = 0
    i = 0
    for byte in k.to_bytes(32, "little"):
        for v in (byte & 15, byte >> 4):
            v += carry
            carry = (v + 8) >> 4
            digits[i] = v - (carry << 4) + 8
            i += 1
    fb = int.from_bytes
    q = (0, 1, 1, 0)
    for n in range(63, -1, -1):
        if n != 63:
            q = _dbl(_dbl(_dbl(_dbl(q))))
        v = digits[n] - 8
        if v:
            o = ((v if v > 0 else -v) - 1) * 128
            entry = (
                fb(tab[o : o + 32], "little"),
                fb(tab[o + 32 : o + 64], "little"),
                fb(tab[o + 64 : o + 96], "little"),
                fb(tab[o + 96 : o + 128], "little"),
            )
            q = _add_cached(q, entry, v < 0)
            entry = None
        # a window (4 doublings, an addition) a step: each point operation leaves ~1.5 KB of big-integer
        # garbage, which a board that collects only between steps must hold on top of verify's peak
        yield
    return q


# ---------------------------------------------------------------------------------------------------
# Public API.


def _hash_steps(*parts):
    h = sha512()
    for part in parts:
        yield from h.update_steps(part)
    return int.from_bytes((yield from h.digest_steps()), "little")


class SigningKey:
    """An Ed25519 key from its 32-byte seed (RFC 8032 section 5.1.5), expanded once."""

    def __init__(self, seed):
        run(self._from_seed_steps(seed))

    def _from_seed_steps(self, seed):
        """Generator: the expanded scalar, prefix and public key from the seed (SHA-512, then a comb)."""
        if len(seed) != 32:
            raise ValueError("seed must be 32 bytes")
        h = sha512()
        yield from h.update_steps(seed)
        h = yield from h.digest_steps()
        a = int.from_bytes(h[:32], "little")
        a &= (1 << 254) - 8
        a |= 1 << 254
        self._a = a % _L
        self._prefix = h[32:]
        X, Y, Z, _ = yield from _comb(self._a, False)
        self.public_key = yield from _encode(X, Y, Z)

    @classmethod
    async def from_seed_async(cls, seed):
        """The key, derived in yielding steps (a SHA-512 block, a fixed-base multiplication and an
        inversion): far too long on a board to run without yielding once the asyncio loop is up."""
        key = object.__new__(cls)  # skip __init__, which would run the steps synchronously
        await run_async(key._from_seed_steps(seed))
        return key

    def sign_steps(self, *parts):
        """Generator: the RFC 8032 signature of the message is its return value (StopIteration.value).

        The message is the concatenation of parts (bytes-like), hashed where they lie: a caller that has
        a message in pieces (a Sig_structure's head and a payload) need not copy it into one buffer.
        """
        r = (yield from _hash_steps(self._prefix, *parts)) % _L
        X, Y, Z, _ = yield from _comb(r, False)
        R = yield from _encode(X, Y, Z)
        yield
        k = (yield from _hash_steps(R, self.public_key, *parts)) % _L
        return R + ((r + k * self._a) % _L).to_bytes(32, "little")

    def sign(self, *parts):
        return run(self.sign_steps(*parts))

    async def sign_async(self, *parts):
        return await run_async(self.sign_steps(*parts))


def verify_steps(public_key, msg, sig):
    """Generator: returns True iff sig is a valid RFC 8032 signature of msg by public_key.

    Strict (section 5.1.7): S must be below L and A a canonical encoding of a curve point; the check
    is [S]B - [k]A == R on encodings, so a non-canonical R never matches. Bad input gives False.
    """
    try:
        sig = bytes(sig)
        public_key = bytes(public_key)
        if len(sig) != 64 or len(public_key) != 32:
            return False
        s = int.from_bytes(sig[32:], "little")
        if s >= _L:
            return False
        A = yield from _decode(public_key)
        if A is None:
            return False
        k = (yield from _hash_steps(sig[:32], public_key, msg)) % _L
        x, y = A
        kA = yield from _mul(k, ((-x) % _P, y, 1, (-x) * y % _P))
        sB = yield from _comb(s, True)
        X, Y, Z, _ = _add(sB, kA)
        return (yield from _encode(X, Y, Z)) == sig[:32]
    except MemoryError:
        raise
    except Exception:
        return False


def verify(public_key, msg, sig):
    return run(verify_steps(public_key, msg, sig))


async def verify_async(public_key, msg, sig):
    return await run_async(verify_steps(public_key, msg, sig))
