# The BLE transport: the board is a GATT peripheral the home gateway connects to (docs/protocol.md §11),
# for boards with no Wi-Fi credentials or no power budget for Wi-Fi.
#
# MicroPython's own `bluetooth` module, in the manner of micropython-lib's aioble: the stack's IRQs only
# record what happened and set events; asyncio tasks do the work. The board advertises (connectable) while
# a bundle waits to be sent and no gateway is connected, and is silent otherwise; once connected it answers
# the info read from the attribute table, waits for the gateway's "send" write (it has subscribed: the
# stack reports no subscriptions), sends the oldest bundle as one transfer of numbered chunks, resends the
# chunks the gateway asks for, and returns from send() on the gateway's "received". The ack comes as a write
# and goes to the app unverified, as from MQTT. With nothing left to send the board ends the connection
# itself: it is connected only as long as needed.
#
# Nobody in radio range is trusted: a write that is not a well-formed down message is dropped; an ack is
# only ever believed after the app verified the gateway's signature; there is no time characteristic
# (time comes only from verified acks).
import asyncio
import time

import bluetooth
from micropython import const

from pinseal.transport import Transport, end_task
from pinseal.transport import ble_link as bl

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_MTU_EXCHANGED = const(21)
_FLAG_READ = const(0x0002)
_FLAG_WRITE = const(0x0008)
_FLAG_NOTIFY = const(0x0010)
_ADV_INTERVAL_US = const(250000)
_DOWN_BUFFER = const(300)  # an ack (~160 B) with its kind byte, with room: the stack's long-write buffer
_DEFAULT_MTU = const(23)
_PREFERRED_MTU = const(247)  # what the board offers when a central exchanges MTUs: 241 bytes a chunk
_IDLE_MS = const(2000)  # connected with nothing to send this long: hang up
_RECEIVED_MS = const(5000)  # no "received" for a whole transfer this long: send it again, as a new one
_LINK_MS = const(200)


class BleTransport(Transport):
    resend_ms = 10000

    def __init__(self, kid, board_id, firmware, pending, depth):
        """pending(): whether a bundle waits to be sent; depth(): bundles in the outbox (for info)."""
        self.kid = kid
        self.board_id = board_id
        self.firmware = firmware
        self.pending = pending
        self.depth = depth
        self._ble = None
        self._conn = None
        self._mtu = _DEFAULT_MTU
        self._ready = False  # the gateway said "send" on this connection
        self._advertising = False
        self._transfer = 0
        self._resend = None  # (transfer, indices) asked for
        self._received = -1  # the last transfer the gateway holds
        self._event = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task = None
        self._idle_since = None
        self._info_depth = -1

    @property
    def connected(self):
        return self._conn is not None and self._ready

    async def start(self):
        if self._task is not None:
            return
        try:
            self._open()
        except (OSError, ValueError) as e:
            self.last_error = e
            print("pinseal: BLE unavailable:", e)
            return
        self._task = asyncio.create_task(self._link())

    def _open(self):
        ble = self._ble = bluetooth.BLE()
        ble.active(True)
        ble.config(mtu=_PREFERRED_MTU)
        ble.irq(self._irq)
        service = (
            bluetooth.UUID(bl.SERVICE_UUID),
            (
                (bluetooth.UUID(bl.INFO_UUID), _FLAG_READ),
                (bluetooth.UUID(bl.BUNDLES_UUID), _FLAG_NOTIFY),
                (bluetooth.UUID(bl.DOWN_UUID), _FLAG_WRITE),
            ),
        )
        ((self._h_info, self._h_bundles, self._h_down),) = ble.gatts_register_services((service,))
        ble.gatts_set_buffer(self._h_down, _DOWN_BUFFER)
        self._write_info()

    def _write_info(self):
        depth = self.depth()
        if depth != self._info_depth:
            self._info_depth = depth
            self._ble.gatts_write(self._h_info, bl.info(self.kid, self.firmware, self.board_id, depth))  # type: ignore

    async def stop(self):
        task = self._task
        self._task = None
        await end_task(task)
        if self._ble is not None:
            self._hang_up()
            self._advertise(False)

    # -- the stack's IRQs: record, wake, nothing more ----------------------------------------------------

    def _irq(self, event, data):
        if event == _IRQ_CENTRAL_CONNECT:
            self._conn = data[0]
            self._mtu = _DEFAULT_MTU
            self._ready = False
            self._advertising = False  # the stack stops advertising on a connection
            self._idle_since = None
        elif event == _IRQ_CENTRAL_DISCONNECT:
            if data[0] == self._conn:
                self._conn = None
                self._ready = False
        elif event == _IRQ_GATTS_WRITE:
            if data[0] == self._conn and data[1] == self._h_down:
                self._down(self._ble.gatts_read(self._h_down))  # type: ignore
        elif event == _IRQ_MTU_EXCHANGED:
            if data[0] == self._conn:
                self._mtu = data[1]
        self._event.set()

    def _down(self, raw):
        try:
            kind, value = bl.decode_down(raw)
        except ValueError:
            return  # not ours, or damaged: dropped
        if kind == bl.DOWN_ACK:
            if self.on_ack is not None:
                self.on_ack(value)
        elif kind == bl.DOWN_RESEND:
            self._resend = value
        elif kind == bl.DOWN_RECEIVED:
            self._received = value
        else:
            self._ready = True

    # -- the link: advertise while something waits, hang up when nothing does --------------------------

    def _advertise(self, on):
        if on == self._advertising:
            return
        try:
            if on:
                adv, resp = bl.advertisement(), bl.scan_response(self.kid)
                self._ble.gap_advertise(_ADV_INTERVAL_US, adv, resp_data=resp, connectable=True)  # type: ignore
            else:
                self._ble.gap_advertise(None)  # type: ignore  # None stops advertising (the stubs say int)
            self._advertising = on
        except OSError as e:
            if not isinstance(self.last_error, OSError) or self.last_error.args != e.args:
                print("pinseal: BLE advertising refused by the stack:", e)  # once a cause, not every 200 ms
            self.last_error = e

    def _hang_up(self):
        conn = self._conn
        if conn is not None:
            try:
                self._ble.gap_disconnect(conn)  # type: ignore
            except OSError:
                pass

    async def _link(self):
        while True:
            self._write_info()
            waiting = self.pending()
            if self._conn is None:
                self._advertise(waiting)
            elif waiting or self._lock.locked():
                self._idle_since = None
            elif self._idle_since is None:
                self._idle_since = time.ticks_ms()
            elif time.ticks_diff(time.ticks_ms(), self._idle_since) > _IDLE_MS:
                self._hang_up()
                self._idle_since = None
            await asyncio.sleep_ms(_LINK_MS)

    # -- sending -------------------------------------------------------------------------------------

    async def send(self, bundle_bytes, topic=None):
        if topic is not None:
            raise ValueError("ble: only this device's bundles go to the gateway")
        async with self._lock:
            while True:
                while not self.connected:
                    self._event.clear()
                    await self._event.wait()
                if await self._transfer_once(bundle_bytes):
                    return

    async def _transfer_once(self, bundle):
        """One transfer of `bundle`: True once the gateway says it holds it; False on a disconnect or no
        answer (the caller sends it again, under a new transfer id)."""
        self._transfer = transfer = (self._transfer + 1) & 0xFF
        conn, mtu = self._conn, self._mtu
        self._resend = None
        for index in range(bl.chunk_count(len(bundle), mtu)):
            if not self._notify(conn, bl.chunk(transfer, bundle, mtu, index)):
                return False
            await asyncio.sleep_ms(0)
        deadline = time.ticks_add(time.ticks_ms(), _RECEIVED_MS)
        while self._received != transfer:
            if self._conn != conn:
                return False
            asked = self._resend
            if asked is not None:
                self._resend = None
                if asked[0] == transfer:
                    for index in asked[1]:  # type: ignore
                        if index * bl.chunk_size(mtu) < len(bundle):
                            if not self._notify(conn, bl.chunk(transfer, bundle, mtu, index)):
                                return False
                    deadline = time.ticks_add(time.ticks_ms(), _RECEIVED_MS)
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                return False
            self._event.clear()
            try:
                await asyncio.wait_for_ms(self._event.wait(), 100)
            except asyncio.TimeoutError:
                pass
        return True

    def _notify(self, conn, data):
        try:
            # positional: the ports take no keywords here (the stubs have data keyword-only)
            self._ble.gatts_notify(conn, self._h_bundles, data)  # type: ignore
            return True
        except OSError as e:  # the connection went away under us (or the stack is out of buffers)
            self.last_error = e
            return False
