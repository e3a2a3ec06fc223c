# SHA-512 (FIPS 180-4) in plain MicroPython. Small ints are 31-bit here as on the boards, so every
# 64-bit word is a heap-allocated big integer and a block costs what its big-integer operations cost
# (each one allocates); the code is shaped to do as few of them as possible:
# - a rotation is one shift of the "doubled" word x * (2**64 + 1); bits left above bit 63 are harmless
#   in sums, so only the new a, e and W[t] are masked;
# - Maj(a, b, c) = b ^ ((a ^ b) & (b ^ c)) reuses a ^ b, which is the next round's b ^ c;
# - eight rounds are unrolled so the working variables never shuffle;
# - the message schedule runs two words at a time in 128-bit lanes of one integer (W[t] and W[t+1]
#   depend on nothing computed in the same step), and K[t] is added to both lanes in one operation.
#
# The work is a generator that yields twice per block, so an asyncio caller can give the loop back
# every half block (`update_steps` / `digest_steps`); `update` / `digest` simply run it to the end.
import struct
from micropython import const

from pinseal.crypto.steps import run

_M = const(0xFFFFFFFFFFFFFFFF)
_D = const(0x10000000000000001)  # x * _D == x | x << 64 for a 64-bit x
_LM = const(0xFFFFFFFFFFFFFFFF0000000000000000FFFFFFFFFFFFFFFF)  # the low word of both 128-bit lanes

# K[2j] | K[2j+1] << 128 (FIPS 180-4 section 4.2.3), added to a lane pair of W in one step.
_KP = (
    0x7137449123EF65CD0000000000000000428A2F98D728AE22,
    0xE9B5DBA58189DBBC0000000000000000B5C0FBCFEC4D3B2F,
    0x59F111F1B605D01900000000000000003956C25BF348B538,
    0xAB1C5ED5DA6D81180000000000000000923F82A4AF194F9B,
    0x12835B0145706FBE0000000000000000D807AA98A3030242,
    0x550C7DC3D5FFB4E20000000000000000243185BE4EE4B28C,
    0x80DEB1FE3B1696B1000000000000000072BE5D74F27B896F,
    0xC19BF174CF69269400000000000000009BDC06A725C71235,
    0xEFBE4786384F25E30000000000000000E49B69C19EF14AD2,
    0x240CA1CC77AC9C6500000000000000000FC19DC68B8CD5B5,
    0x4A7484AA6EA6E48300000000000000002DE92C6F592B0275,
    0x76F988DA831153B500000000000000005CB0A9DCBD41FBD4,
    0xA831C66D2DB432100000000000000000983E5152EE66DFAB,
    0xBF597FC7BEEF0EE40000000000000000B00327C898FB213F,
    0xD5A79147930AA7250000000000000000C6E00BF33DA88FC2,
    0x142929670A0E6E70000000000000000006CA6351E003826F,
    0x2E1B21385C26C926000000000000000027B70A8546D22FFC,
    0x53380D139D95B3DF00000000000000004D2C6DFC5AC42AED,
    0x766A0ABB3C77B2A80000000000000000650A73548BAF63DE,
    0x92722C851482353B000000000000000081C2C92E47EDAEE6,
    0xA81A664BBC4230010000000000000000A2BFE8A14CF10364,
    0xC76C51A30654BE300000000000000000C24B8B70D0F89791,
    0xD69906245565A9100000000000000000D192E819D6EF5218,
    0x106AA07032BBD1B80000000000000000F40E35855771202A,
    0x1E376C085141AB53000000000000000019A4C116B8D2D0C8,
    0x34B0BCB5E19B48A800000000000000002748774CDF8EEB99,
    0x4ED8AA4AE3418ACB0000000000000000391C0CB3C5C95A63,
    0x682E6FF3D6B2B8A300000000000000005B9CCA4F7763E373,
    0x78A5636F43172F600000000000000000748F82EE5DEFB2FC,
    0x8CC702081A6439EC000000000000000084C87814A1F0AB72,
    0xA4506CEBDE82BDE9000000000000000090BEFFFA23631E28,
    0xC67178F2E372532B0000000000000000BEF9A3F7B2C67915,
    0xD186B8C721C0C2070000000000000000CA273ECEEA26619C,
    0xF57D4F7FEE6ED1780000000000000000EADA7DD6CDE0EB1E,
    0x0A637DC5A2C898A6000000000000000006F067AA72176FBA,
    0x1B710B35131C471B0000000000000000113F9804BEF90DAE,
    0x32CAAB7B40C72493000000000000000028DB77F523047D84,
    0x431D67C49C100D4C00000000000000003C9EBE0A15C9BEBC,
    0x597F299CFC657E2A00000000000000004CC5D4BECB3E42B6,
    0x6C44198C4A47581700000000000000005FCB6FAB3AD6FAEC,
)

_IV = (
    0x6A09E667F3BCC908,
    0xBB67AE8584CAA73B,
    0x3C6EF372FE94F82B,
    0xA54FF53A5F1D36F1,
    0x510E527FADE682D1,
    0x9B05688C2B3E6C1F,
    0x1F83D9ABFB41BD6B,
    0x5BE0CD19137E2179,
)


def _compress(s, buf, off):
    """Generator: fold the 128-byte block buf[off:off+128] into the state list s.

    Yields after round 24 (the schedule costs about as much as 30 rounds) and at the end: two slices
    of about half a block each (~0.5 ms in the VM), the second ending with the state updated. A third
    yield would shorten slices by a third but cost ~15% more time per block in yields.
    """
    w = struct.unpack_from(">16Q", buf, off)
    kp = _KP
    # y[j] = W[2j] | W[2j+1] << 128 and o[j] = W[2j+1] | W[2j+2] << 128: the even- and odd-aligned lane
    # pairs the schedule reads (t-2, t-16 are even-aligned for even t; t-7, t-15 odd-aligned).
    y = [w[j] | (w[j + 1] << 128) for j in range(0, 16, 2)]
    o = [w[j] | (w[j + 1] << 128) for j in range(1, 15, 2)]
    kw = []
    for j in range(8):
        x = y[j] + kp[j]
        kw.append(x)
        kw.append(x >> 128)
    u = y[7]
    for j in range(8, 40):
        x = u * _D
        v = o[j - 8]
        z = v * _D
        n = (
            (((x >> 19) ^ (x >> 61) ^ (u >> 6)) & _LM)
            + o[j - 4]
            + (((z >> 1) ^ (z >> 8) ^ (v >> 7)) & _LM)
            + y[j - 8]
        ) & _LM
        o.append((u >> 128) | ((n & _M) << 128))
        y.append(n)
        u = n
        x = n + kp[j]
        kw.append(x)
        kw.append(x >> 128)
    a, b, c, d, e, f, g, h = s
    q = b ^ c
    for i in range(0, 80, 8):
        x = e * _D
        t = h + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (g ^ (e & (f ^ g))) + kw[i]
        x = a * _D
        p = a ^ b
        d = (d + t) & _M
        h = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (b ^ (p & q))) & _M
        x = d * _D
        t = g + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (f ^ (d & (e ^ f))) + kw[i + 1]
        x = h * _D
        q = h ^ a
        c = (c + t) & _M
        g = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (a ^ (q & p))) & _M
        x = c * _D
        t = f + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (e ^ (c & (d ^ e))) + kw[i + 2]
        x = g * _D
        p = g ^ h
        b = (b + t) & _M
        f = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (h ^ (p & q))) & _M
        x = b * _D
        t = e + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (d ^ (b & (c ^ d))) + kw[i + 3]
        x = f * _D
        q = f ^ g
        a = (a + t) & _M
        e = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (g ^ (q & p))) & _M
        x = a * _D
        t = d + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (c ^ (a & (b ^ c))) + kw[i + 4]
        x = e * _D
        p = e ^ f
        h = (h + t) & _M
        d = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (f ^ (p & q))) & _M
        x = h * _D
        t = c + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (b ^ (h & (a ^ b))) + kw[i + 5]
        x = d * _D
        q = d ^ e
        g = (g + t) & _M
        c = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (e ^ (q & p))) & _M
        x = g * _D
        t = b + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (a ^ (g & (h ^ a))) + kw[i + 6]
        x = c * _D
        p = c ^ d
        f = (f + t) & _M
        b = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (d ^ (p & q))) & _M
        x = f * _D
        t = a + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (h ^ (f & (g ^ h))) + kw[i + 7]
        x = b * _D
        q = b ^ c
        e = (e + t) & _M
        a = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (c ^ (q & p))) & _M
        if i == 16:
            yield
    s[0] = (s[0] + a) & _M
    s[1] = (s[1] + b) & _M
    s[2] = (s[2] + c) & _M
    s[3] = (s[3] + d) & _M
    s[4] = (s[4] + e) & _M
    s[5] = (s[5] + f) & _M
    s[6] = (s[6] + g) & _M
    s[7] = (s[7] + h) & _M
    yield


class sha512:
    digest_size = 64
    block_size = 128

    def __init__(self, data=None):
        self._s = list(_IV)
        self._buf = bytearray()
        self._n = 0
        if data:
            self.update(data)

    def update(self, data):
        run(self.update_steps(data))

    def update_steps(self, data):
        """Generator form of update(): yields twice per 128-byte block hashed."""
        s = self._s
        self._n += len(data)
        buf = self._buf
        off = 0
        if buf:
            off = 128 - len(buf)
            buf.extend(data[:off])
            if len(buf) < 128:
                return
            yield from _compress(s, buf, 0)
            self._buf = buf = bytearray()
        end = len(data) - 127
        while off < end:
            yield from _compress(s, data, off)
            off += 128
        buf.extend(data[off:])

    def digest(self):
        return run(self.digest_steps())

    def digest_steps(self):
        """Generator form of digest(); its return value (StopIteration.value) is the 64-byte digest."""
        s = list(self._s)
        n = len(self._buf)
        tail = bytearray(self._buf)
        tail.append(0x80)
        tail.extend(bytes((111 - n) % 128 + 8))
        tail.extend((self._n * 8).to_bytes(8, "big"))
        yield from _compress(s, tail, 0)
        if len(tail) > 128:
            yield from _compress(s, tail, 128)
        return struct.pack(">8Q", *s)
