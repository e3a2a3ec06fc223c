# The serial transport: bundles up and acks down as docs/protocol.md §10 frames over a UART (a USB-UART
# adapter to the gateway, an RS-485 transceiver on a mast), for boards without Wi-Fi or the power for it.
#
# A serial line has no connection to open, so the link counts as up while the gateway's hello frames keep
# coming (one every 2 s; up for 10 s after the last): a bundle written into a cable nobody reads would only
# be lost to the line. Frames the line damaged are dropped by their CRC and counted; the bundle is sent again
# when no ack came (the app resends the oldest bundle until a verified ack names it), so noise costs time,
# never a reading. Nothing read off the line is trusted: acks go to the app as unverified bytes, as from MQTT.
#
# The UART is polled, not awaited through asyncio's stream I/O: uart.any() and uart.read() are the calls
# every port has, and at 115,200 baud a 20 ms poll is ~230 bytes, inside the receive buffer asked for. A frame
# goes out in pieces of _PIECE bytes with a pause of the time the line takes to carry each, so a 2 KB bundle
# never holds the event loop (or a UART driver's blocking write) for the 180 ms it lasts on the wire.
import asyncio
import time

from micropython import const

from pinseal.transport import Transport, end_task
from pinseal.transport import serial_frames as sf

_POLL_MS = const(20)
_HEARD_FOR_MS = const(10000)  # five of the gateway's hellos
_PIECE = const(128)
_RXBUF = const(1024)
_READ_MAX = const(512)


class SerialTransport(Transport):
    """Frames over the UART `cfg` names (or the board profile's "uart")."""

    resend_ms = 3000  # a wire's round trip is the gateway's commit, well under a second

    def __init__(self, cfg, uart_profile=None):
        wired = uart_profile or {}
        self.uart_id = cfg["uart"] if cfg["uart"] >= 0 else wired.get("id", -1)
        self.tx = cfg["tx"] if cfg["tx"] >= 0 else wired.get("tx", -1)
        self.rx = cfg["rx"] if cfg["rx"] >= 0 else wired.get("rx", -1)
        self.baudrate = cfg["baudrate"]
        self._uart = None
        self._reader = sf.Reader()
        self._task = None
        self._heard_ms = None
        self._lock = asyncio.Lock()
        self.dropped = {}  # reason -> frames dropped (logs and status)

    @property
    def connected(self):
        heard = self._heard_ms
        return heard is not None and time.ticks_diff(time.ticks_ms(), heard) < _HEARD_FOR_MS

    def _open(self):
        from machine import UART

        if self.uart_id < 0:
            raise ValueError("serial: no UART: set serial.uart or the board profile's uart")
        kw = {"baudrate": self.baudrate, "rxbuf": _RXBUF}
        if self.tx >= 0 and self.rx >= 0:
            kw["tx"] = self.tx
            kw["rx"] = self.rx
        return UART(self.uart_id, **kw)

    async def start(self):
        if self._task is not None:
            return
        try:
            if self._uart is None:
                self._uart = self._open()
        except (ValueError, OSError) as e:
            self.last_error = e
            print("pinseal: serial link unavailable:", e)
            return
        self._uart.write(b"\x00")  # ends whatever a reset cut off mid-frame: the next frame starts clean
        self._task = asyncio.create_task(self._read_loop())

    async def stop(self):
        task = self._task
        self._task = None
        self._heard_ms = None
        await end_task(task)

    async def _read_loop(self):
        uart = self._uart
        if uart is None:
            return
        reader = self._reader
        while True:
            n = uart.any()
            data = uart.read(min(n, _READ_MAX)) if n else None
            if not data:
                await asyncio.sleep_ms(_POLL_MS)
                continue
            for kind, payload in reader.feed(data):
                if kind is None:
                    self.dropped[payload] = self.dropped.get(payload, 0) + 1
                    continue
                self._heard_ms = time.ticks_ms()
                if kind == sf.KIND_ACK and self.on_ack is not None:
                    self.on_ack(payload)
            data = None
            await asyncio.sleep_ms(0)

    async def send(self, bundle_bytes, topic=None):
        if topic is not None:
            raise ValueError("serial: only this device's bundles travel on the line")
        async with self._lock:
            while not self.connected:
                await asyncio.sleep_ms(200)
            frame = sf.encode(sf.KIND_BUNDLE, bundle_bytes)
            piece_ms = _PIECE * 10000 // self.baudrate + 1  # 10 bits a byte on the wire
            uart = self._uart
            if uart is None:
                raise OSError(19)  # ENODEV: start() found no UART
            mv = memoryview(frame)
            for off in range(0, len(frame), _PIECE):
                uart.write(mv[off : off + _PIECE])
                await asyncio.sleep_ms(piece_ms)
            frame = mv = None
