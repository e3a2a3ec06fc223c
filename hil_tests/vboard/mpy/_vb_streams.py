# asyncio streams of the virtual board: asyncio.open_connection() and the Stream (StreamReader/StreamWriter)
# it returns, as MicroPython's asyncio/stream.py has them on ESP32 and Pico W, over host TCP/TLS connections
# bridged by hil_tests/vboard/net.mjs (JS module `vboard_net`). The net plugin runs install() when the VM
# starts, so firmware's plain `import asyncio; await asyncio.open_connection(...)` works unchanged.
#
# As on a board: open_connection() raises at once only when the host cannot be resolved (getaddrinfo) or
# there is no route (Wi-Fi not connected: EHOSTUNREACH); a refused, timed-out or TLS-rejected connect is seen
# by the first write()/drain()/read() (stream.py only waits for the socket to become writable). Waits are
# JS Promises; data are read by a synchronous call after each wait, so a cancelled wait loses nothing.
import errno
from binascii import hexlify

from micropython import const

import vboard_net

_CHUNK = const(2048)

# getaddrinfo failure: ESP-IDF's lwIP EAI_FAIL (-202); the Pico W's lwIP DNS (-2).
_EAI = {"esp32": -202, "rp2": -2}


def _raise(err):
    kind = err[1]
    if kind == "V":  # certificate verification failed (modtls_mbedtls.c, asynchronous handshake)
        raise ValueError(err[2:])
    if kind == "T":  # other mbedTLS error; ports built with MBEDTLS_ERROR_C add the text
        code, _, text = err[2:].partition("|")
        if vboard_net.port() == "esp32":
            raise OSError(int(code), text)
        raise OSError(int(code))
    if kind == "W":
        raise OSError(err[2:])
    name = err[1:]
    if name == "EAI":
        raise OSError(_EAI.get(vboard_net.port(), -202))
    raise OSError(getattr(errno, name, errno.EIO))


def _data(r):
    if r is None:
        return None
    if r and r[0] == "!":
        _raise(r)
    return bytes.fromhex(r)


class Stream:
    def __init__(self, cid, e=None):
        self._id = cid
        # stream.py keeps extra info only for server-side streams: get_extra_info('peername') on a client
        # stream raises KeyError on a board, and so it does here.
        self.e = {} if e is None else e

    def get_extra_info(self, v):
        return self.e[v]

    def close(self):
        vboard_net.close(self._id)

    async def wait_closed(self):
        vboard_net.close(self._id)

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        vboard_net.close(self._id)

    async def read(self, n=-1):
        r = b""
        while True:
            await vboard_net.wait_readable(self._id)
            r2 = _data(vboard_net.recv(self._id, n))
            if r2 is None:
                continue
            if n >= 0:
                return r2
            if not r2:
                return r
            r += r2

    async def readinto(self, buf):
        while True:
            await vboard_net.wait_readable(self._id)
            r2 = _data(vboard_net.recv(self._id, len(buf)))
            if r2 is not None:
                buf[: len(r2)] = r2
                return len(r2)

    async def readexactly(self, n):
        r = b""
        while n:
            await vboard_net.wait_readable(self._id)
            r2 = _data(vboard_net.recv(self._id, n))
            if r2 is None:
                continue
            if not r2:
                raise EOFError
            r += r2
            n -= len(r2)
        return r

    async def readline(self):
        line = b""
        while True:
            await vboard_net.wait_readable(self._id)
            l2 = _data(vboard_net.recv_line(self._id))
            if l2 is None:
                continue
            line += l2
            if not l2 or line[-1] == 10:
                return line

    def write(self, buf):
        if isinstance(buf, str):
            buf = buf.encode()
        mv = memoryview(buf)
        for off in range(0, len(mv), _CHUNK):  # small hex strings: no large allocation in the JS bridge
            r = vboard_net.send(self._id, hexlify(mv[off : off + _CHUNK]).decode())
            if r:
                _raise(r)

    async def drain(self):
        # Returns once what was written fits lwIP's send buffer (net.mjs SNDBUF_BYTES); always yields.
        await vboard_net.wait_writable(self._id)
        r = vboard_net.error(self._id)
        if r:
            _raise(r)

    async def awrite(self, buf, off=0, sz=-1):
        if off != 0 or sz != -1:
            buf = memoryview(buf)
            if sz == -1:
                sz = len(buf)
            buf = buf[off : off + sz]
        self.write(buf)
        await self.drain()

    awritestr = awrite
    aclose = wait_closed


StreamReader = Stream
StreamWriter = Stream


async def open_connection(host, port, ssl=None, server_hostname=None):
    tls_options = None
    if ssl:
        if ssl is True:
            import ssl as _ssl

            ssl = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
        tls_options = ssl._vb_tls_options(server_hostname or host)
    cid = vboard_net.open(host, port, tls_options)
    if isinstance(cid, str):
        _raise(cid)
    try:
        await vboard_net.wait_connected(cid)
    except BaseException:  # cancelled (wait_for): the half-open connection must not leak
        vboard_net.close(cid)
        raise
    s = Stream(cid)
    return s, s


def install():
    import asyncio

    asyncio.open_connection = open_connection
    asyncio.Stream = Stream
    asyncio.StreamReader = Stream
    asyncio.StreamWriter = Stream
