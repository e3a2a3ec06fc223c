# machine.UART of the virtual board (JS module `vboard_uart` of the uart plugin): the UART the board profile
# wires out ("uart": {"id", "tx", "rx"}) reaches the host as the board's second serial line; the chip's other
# UARTs exist and are silent. The calls and defaults follow the ESP32 and RP2 ports: keyword init, a receive
# ring buffer of `rxbuf` bytes (256 by default) that loses what arrives while it is full, read() giving None
# when nothing is there (timeout 0), write() returning the count written.
from binascii import hexlify

import vboard_uart

_COUNT = vboard_uart.count()


class UART:
    INV_TX = 1
    INV_RX = 2

    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, **kw):
        if not isinstance(id, int) or not 0 <= id < _COUNT:
            raise ValueError("UART(%s) doesn't exist" % (id,))
        self._id = id
        self._open = False
        self.init(baudrate, bits, parity, stop, **kw)

    def init(
        self,
        baudrate=115200,
        bits=8,
        parity=None,
        stop=1,
        *,
        tx=None,
        rx=None,
        rxbuf=256,
        txbuf=256,
        timeout=0,
        timeout_char=0,
        flow=0,
        invert=0,
        rts=None,
        cts=None,
    ):
        if bits not in (5, 6, 7, 8) or stop not in (1, 2) or parity not in (None, 0, 1):
            raise ValueError("invalid UART parameter")
        if baudrate <= 0:
            raise ValueError("invalid baudrate")
        self._baudrate = baudrate
        self._timeout = timeout
        vboard_uart.open(self._id, baudrate, rxbuf)
        self._open = True

    def deinit(self):
        vboard_uart.close(self._id)
        self._open = False

    def any(self):
        return vboard_uart.any(self._id) if self._open else 0

    def read(self, nbytes=-1):
        data = bytes.fromhex(vboard_uart.read(self._id, -1 if nbytes is None else nbytes))
        return data if data else None

    def readinto(self, buf, nbytes=-1):
        n = len(buf) if nbytes is None or nbytes < 0 else min(nbytes, len(buf))
        data = self.read(n)
        if not data:
            return None
        buf[: len(data)] = data
        return len(data)

    def readline(self):
        line = b""
        while self.any():
            c = self.read(1)
            line += c
            if c == b"\n":
                break
        return line or None

    def write(self, buf):
        if isinstance(buf, str):
            buf = buf.encode()
        if not self._open:
            raise OSError(22)  # EINVAL: the port rejects I/O on a UART that was deinit()ed
        mv = memoryview(buf)
        n = 0
        for off in range(0, len(mv), 1024):  # small hex strings across the JS bridge
            n += vboard_uart.write(self._id, hexlify(mv[off : off + 1024]).decode())
        return n

    def flush(self):
        pass

    def txdone(self):
        return True

    def sendbreak(self):
        pass

    def __repr__(self):
        return "UART(%d, baudrate=%d)" % (self._id, self._baudrate)
