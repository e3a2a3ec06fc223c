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
# The work is a generator that yields every 8 rounds, so an asyncio caller can give the loop back ten
# times a block (`update_steps` / `digest_steps`); `update` / `digest` simply run it to the end.
import struct
from micropython import const

from pinseal.crypto.steps import run

_M = const(0xFFFFFFFFFFFFFFFF)
_D = const(0x10000000000000001)  # x * _D == x | x << 64 for a 64-bit x
_LM = const(0xFFFFFFFFFFFFFFFF0000000000000000FFFFFFFFFFFFFFFF)  # the low word of both 128-bit lanes

# K[2j] | K[2j+1] << 128 (FIPS 180-4 section 4.2.3), added to a lane pair of W in one step: 24 bytes
# big-endian each, a bytes constant so that from ROMFS it takes no heap (40 big integers took ~2 KB).
_KP = (
    b"\x71\x37\x44\x91\x23\xef\x65\xcd\x00\x00\x00\x00\x00\x00\x00\x00\x42\x8a\x2f\x98\xd7\x28\xae\x22"
    b"\xe9\xb5\xdb\xa5\x81\x89\xdb\xbc\x00\x00\x00\x00\x00\x00\x00\x00\xb5\xc0\xfb\xcf\xec\x4d\x3b\x2f"
    b"\x59\xf1\x11\xf1\xb6\x05\xd0\x19\x00\x00\x00\x00\x00\x00\x00\x00\x39\x56\xc2\x5b\xf3\x48\xb5\x38"
    b"\xab\x1c\x5e\xd5\xda\x6d\x81\x18\x00\x00\x00\x00\x00\x00\x00\x00\x92\x3f\x82\xa4\xaf\x19\x4f\x9b"
    b"\x12\x83\x5b\x01\x45\x70\x6f\xbe\x00\x00\x00\x00\x00\x00\x00\x00\xd8\x07\xaa\x98\xa3\x03\x02\x42"
    b"\x55\x0c\x7d\xc3\xd5\xff\xb4\xe2\x00\x00\x00\x00\x00\x00\x00\x00\x24\x31\x85\xbe\x4e\xe4\xb2\x8c"
    b"\x80\xde\xb1\xfe\x3b\x16\x96\xb1\x00\x00\x00\x00\x00\x00\x00\x00\x72\xbe\x5d\x74\xf2\x7b\x89\x6f"
    b"\xc1\x9b\xf1\x74\xcf\x69\x26\x94\x00\x00\x00\x00\x00\x00\x00\x00\x9b\xdc\x06\xa7\x25\xc7\x12\x35"
    b"\xef\xbe\x47\x86\x38\x4f\x25\xe3\x00\x00\x00\x00\x00\x00\x00\x00\xe4\x9b\x69\xc1\x9e\xf1\x4a\xd2"
    b"\x24\x0c\xa1\xcc\x77\xac\x9c\x65\x00\x00\x00\x00\x00\x00\x00\x00\x0f\xc1\x9d\xc6\x8b\x8c\xd5\xb5"
    b"\x4a\x74\x84\xaa\x6e\xa6\xe4\x83\x00\x00\x00\x00\x00\x00\x00\x00\x2d\xe9\x2c\x6f\x59\x2b\x02\x75"
    b"\x76\xf9\x88\xda\x83\x11\x53\xb5\x00\x00\x00\x00\x00\x00\x00\x00\x5c\xb0\xa9\xdc\xbd\x41\xfb\xd4"
    b"\xa8\x31\xc6\x6d\x2d\xb4\x32\x10\x00\x00\x00\x00\x00\x00\x00\x00\x98\x3e\x51\x52\xee\x66\xdf\xab"
    b"\xbf\x59\x7f\xc7\xbe\xef\x0e\xe4\x00\x00\x00\x00\x00\x00\x00\x00\xb0\x03\x27\xc8\x98\xfb\x21\x3f"
    b"\xd5\xa7\x91\x47\x93\x0a\xa7\x25\x00\x00\x00\x00\x00\x00\x00\x00\xc6\xe0\x0b\xf3\x3d\xa8\x8f\xc2"
    b"\x14\x29\x29\x67\x0a\x0e\x6e\x70\x00\x00\x00\x00\x00\x00\x00\x00\x06\xca\x63\x51\xe0\x03\x82\x6f"
    b"\x2e\x1b\x21\x38\x5c\x26\xc9\x26\x00\x00\x00\x00\x00\x00\x00\x00\x27\xb7\x0a\x85\x46\xd2\x2f\xfc"
    b"\x53\x38\x0d\x13\x9d\x95\xb3\xdf\x00\x00\x00\x00\x00\x00\x00\x00\x4d\x2c\x6d\xfc\x5a\xc4\x2a\xed"
    b"\x76\x6a\x0a\xbb\x3c\x77\xb2\xa8\x00\x00\x00\x00\x00\x00\x00\x00\x65\x0a\x73\x54\x8b\xaf\x63\xde"
    b"\x92\x72\x2c\x85\x14\x82\x35\x3b\x00\x00\x00\x00\x00\x00\x00\x00\x81\xc2\xc9\x2e\x47\xed\xae\xe6"
    b"\xa8\x1a\x66\x4b\xbc\x42\x30\x01\x00\x00\x00\x00\x00\x00\x00\x00\xa2\xbf\xe8\xa1\x4c\xf1\x03\x64"
    b"\xc7\x6c\x51\xa3\x06\x54\xbe\x30\x00\x00\x00\x00\x00\x00\x00\x00\xc2\x4b\x8b\x70\xd0\xf8\x97\x91"
    b"\xd6\x99\x06\x24\x55\x65\xa9\x10\x00\x00\x00\x00\x00\x00\x00\x00\xd1\x92\xe8\x19\xd6\xef\x52\x18"
    b"\x10\x6a\xa0\x70\x32\xbb\xd1\xb8\x00\x00\x00\x00\x00\x00\x00\x00\xf4\x0e\x35\x85\x57\x71\x20\x2a"
    b"\x1e\x37\x6c\x08\x51\x41\xab\x53\x00\x00\x00\x00\x00\x00\x00\x00\x19\xa4\xc1\x16\xb8\xd2\xd0\xc8"
    b"\x34\xb0\xbc\xb5\xe1\x9b\x48\xa8\x00\x00\x00\x00\x00\x00\x00\x00\x27\x48\x77\x4c\xdf\x8e\xeb\x99"
    b"\x4e\xd8\xaa\x4a\xe3\x41\x8a\xcb\x00\x00\x00\x00\x00\x00\x00\x00\x39\x1c\x0c\xb3\xc5\xc9\x5a\x63"
    b"\x68\x2e\x6f\xf3\xd6\xb2\xb8\xa3\x00\x00\x00\x00\x00\x00\x00\x00\x5b\x9c\xca\x4f\x77\x63\xe3\x73"
    b"\x78\xa5\x63\x6f\x43\x17\x2f\x60\x00\x00\x00\x00\x00\x00\x00\x00\x74\x8f\x82\xee\x5d\xef\xb2\xfc"
    b"\x8c\xc7\x02\x08\x1a\x64\x39\xec\x00\x00\x00\x00\x00\x00\x00\x00\x84\xc8\x78\x14\xa1\xf0\xab\x72"
    b"\xa4\x50\x6c\xeb\xde\x82\xbd\xe9\x00\x00\x00\x00\x00\x00\x00\x00\x90\xbe\xff\xfa\x23\x63\x1e\x28"
    b"\xc6\x71\x78\xf2\xe3\x72\x53\x2b\x00\x00\x00\x00\x00\x00\x00\x00\xbe\xf9\xa3\xf7\xb2\xc6\x79\x15"
    b"\xd1\x86\xb8\xc7\x21\xc0\xc2\x07\x00\x00\x00\x00\x00\x00\x00\x00\xca\x27\x3e\xce\xea\x26\x61\x9c"
    b"\xf5\x7d\x4f\x7f\xee\x6e\xd1\x78\x00\x00\x00\x00\x00\x00\x00\x00\xea\xda\x7d\xd6\xcd\xe0\xeb\x1e"
    b"\x0a\x63\x7d\xc5\xa2\xc8\x98\xa6\x00\x00\x00\x00\x00\x00\x00\x00\x06\xf0\x67\xaa\x72\x17\x6f\xba"
    b"\x1b\x71\x0b\x35\x13\x1c\x47\x1b\x00\x00\x00\x00\x00\x00\x00\x00\x11\x3f\x98\x04\xbe\xf9\x0d\xae"
    b"\x32\xca\xab\x7b\x40\xc7\x24\x93\x00\x00\x00\x00\x00\x00\x00\x00\x28\xdb\x77\xf5\x23\x04\x7d\x84"
    b"\x43\x1d\x67\xc4\x9c\x10\x0d\x4c\x00\x00\x00\x00\x00\x00\x00\x00\x3c\x9e\xbe\x0a\x15\xc9\xbe\xbc"
    b"\x59\x7f\x29\x9c\xfc\x65\x7e\x2a\x00\x00\x00\x00\x00\x00\x00\x00\x4c\xc5\xd4\xbe\xcb\x3e\x42\xb6"
    b"\x6c\x44\x19\x8c\x4a\x47\x58\x17\x00\x00\x00\x00\x00\x00\x00\x00\x5f\xcb\x6f\xab\x3a\xd6\xfa\xec"
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

    The message schedule is rolled along with the rounds: pairs of words are computed four at a time, just
    before the eight rounds that use them, into two 8-slot rings (y[j & 7] = W[2j] | W[2j+1] << 128,
    o[j & 7] = W[2j+1] | W[2j+2] << 128; the schedule reads back 8 pairs at most). A block so holds 16
    big integers of schedule rather than all 80 words and their K sums (~8 KB live while it was signed).
    Yields every 8 rounds: ten slices of ~0.1 ms in the VM. A slice's big-integer temporaries (~16 KB
    of garbage; ~160 KB a block) can be collected only between slices in the VM, and a board with 100 KB
    of RAM must never need more than a few KB above its live heap within one.
    """
    w = struct.unpack_from(">16Q", buf, off)
    kp = memoryview(_KP)
    fb = int.from_bytes
    y = [w[j] | (w[j + 1] << 128) for j in range(0, 16, 2)]
    o = [w[j] | (w[j + 1] << 128) for j in range(1, 15, 2)]
    o.append(0)  # o[7] = W[15] | W[16] << 128 is written once W[16] is known
    w = None
    u = y[7]
    a, b, c, d, e, f, g, h = s
    q = b ^ c
    for i in range(0, 80, 8):
        j0 = i >> 1  # the rounds i..i+7 use pairs j0..j0+3
        if j0 >= 8:
            for j in range(j0, j0 + 4):
                k = j & 7  # y[k], o[k] hold pair j - 8 until pair j replaces it
                x = u * _D
                v = o[k]
                z = v * _D
                n = (
                    (((x >> 19) ^ (x >> 61) ^ (u >> 6)) & _LM)
                    + o[(j + 4) & 7]
                    + (((z >> 1) ^ (z >> 8) ^ (v >> 7)) & _LM)
                    + y[k]
                ) & _LM
                o[(j + 7) & 7] = (u >> 128) | ((n & _M) << 128)
                y[k] = n
                u = n
        m = j0 & 7
        kc = 24 * j0
        k0 = y[m] + fb(kp[kc : kc + 24], "big")
        k1 = k0 >> 128
        k2 = y[m + 1] + fb(kp[kc + 24 : kc + 48], "big")
        k3 = k2 >> 128
        k4 = y[m + 2] + fb(kp[kc + 48 : kc + 72], "big")
        k5 = k4 >> 128
        k6 = y[m + 3] + fb(kp[kc + 72 : kc + 96], "big")
        k7 = k6 >> 128
        x = e * _D
        t = h + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (g ^ (e & (f ^ g))) + k0
        x = a * _D
        p = a ^ b
        d = (d + t) & _M
        h = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (b ^ (p & q))) & _M
        x = d * _D
        t = g + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (f ^ (d & (e ^ f))) + k1
        x = h * _D
        q = h ^ a
        c = (c + t) & _M
        g = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (a ^ (q & p))) & _M
        x = c * _D
        t = f + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (e ^ (c & (d ^ e))) + k2
        x = g * _D
        p = g ^ h
        b = (b + t) & _M
        f = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (h ^ (p & q))) & _M
        x = b * _D
        t = e + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (d ^ (b & (c ^ d))) + k3
        x = f * _D
        q = f ^ g
        a = (a + t) & _M
        e = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (g ^ (q & p))) & _M
        x = a * _D
        t = d + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (c ^ (a & (b ^ c))) + k4
        x = e * _D
        p = e ^ f
        h = (h + t) & _M
        d = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (f ^ (p & q))) & _M
        x = h * _D
        t = c + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (b ^ (h & (a ^ b))) + k5
        x = d * _D
        q = d ^ e
        g = (g + t) & _M
        c = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (e ^ (q & p))) & _M
        x = g * _D
        t = b + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (a ^ (g & (h ^ a))) + k6
        x = c * _D
        p = c ^ d
        f = (f + t) & _M
        b = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (d ^ (p & q))) & _M
        x = f * _D
        t = a + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (h ^ (f & (g ^ h))) + k7
        x = b * _D
        q = b ^ c
        e = (e + t) & _M
        a = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (c ^ (q & p))) & _M
        if i != 72:
            yield  # every 8 rounds (the last slice ends with the state updated)
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
        """Generator form of update(): yields ten times per 128-byte block hashed."""
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
