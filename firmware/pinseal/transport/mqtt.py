# The MQTT 3.1.1 transport: an asyncio client for MicroPython (ESP32, Pico W) and MQTTTransport, which
# names its topics and broker user after the device's key id (docs/protocol.md §6).
#
# One background task owns the connection: open (TCP, or TLS verified against the configured CA),
# CONNECT/CONNACK, SUBSCRIBE/SUBACK to the one topic it reads, then read packets while pinging every
# keepalive/2; a PINGREQ still unanswered at the next tick, an I/O error or a malformed packet ends the
# session. It then reconnects after an exponential backoff with full jitter: a uniform delay in
# [0, min(cap, base * 2^attempt)], attempt counting failures since the last session that came up.
#
# send() publishes at QoS 1, one message in flight: written, then retransmitted with DUP after a
# reconnect or when no PUBACK came within retry_ms, until the broker's PUBACK. Clean session: the broker
# keeps nothing for the device between connections (no queued acks, no subscriptions to go stale); the
# device needs nothing kept, because its outbox resends every bundle until a gateway ack covers it, and
# the gateway acks a resent bundle again. The cost is only that an ack published while the device is
# offline is lost, and the bundle is sent once more.
#
# Incoming messages are not trusted: only PUBLISH on the subscribed topic is passed to on_ack, as
# bytes, unverified (the app checks the gateway's signature with pinseal.wire.ack). Messages on any
# other topic, and oversized ones, are acknowledged (QoS 1) and dropped. Duplicates (QoS 1) are passed
# on as they come. Memory: the receive buffer, the PUBLISH header buffer and the CONNECT packet are
# allocated once; a message in costs its payload's bytes, a message out nothing but the asyncio
# wait_for task.
import asyncio
import errno
import random
from binascii import hexlify

from micropython import const

from pinseal.transport import Transport, end_task
from pinseal.transport import mqtt_packets as mp

PORT = const(1883)
TLS_PORT = const(8883)
KEEPALIVE_S = const(60)
BACKOFF_BASE_MS = const(1000)
BACKOFF_CAP_MS = const(60000)
CONNECT_TIMEOUT_MS = const(20000)  # TCP (+ TLS) + CONNACK + SUBACK
RETRY_MS = const(20000)  # no PUBACK this long on a live connection: retransmit with DUP
# The largest packet read into RAM: an ack (at most 2,048 bytes, pinseal.wire.ack) with its topic and
# headers. Larger packets are read through and dropped, so a hostile broker cannot exhaust the heap.
RX_BUFFER_BYTES = const(2176)
# What the client keeps for reading: every packet it expects (CONNACK, SUBACK, PUBACK, PINGRESP, an ack
# of ~210 bytes with its topic) fits; a longer one up to RX_BUFFER_BYTES gets a buffer of its own for as
# long as it is handled. Keeping the whole 2,176 bytes for a rare long rejection cost the board ~1.9 KB
# of heap for good, at its high-water mark (sealing while an ack is verified).
RX_RESIDENT_BYTES = const(256)

_MAX_ATTEMPT_SHIFT = const(20)

_REFUSALS = (
    "",
    "unacceptable protocol version",
    "client identifier rejected",
    "server unavailable",
    "bad user name or password",
    "not authorized",
)


class Refused(Exception):
    """The broker said no: CONNACK return code 1..5, or SUBACK failure (0x80) for the ack topic."""

    def __init__(self, code):
        if code == mp.SUBACK_FAILURE:
            text = "subscription refused (ACL?)"
        else:
            text = _REFUSALS[code] if code < len(_REFUSALS) else "unknown"
        super().__init__("MQTT refused: %s (%d)" % (text, code))
        self.code = code


def backoff_ms(attempt, base_ms=BACKOFF_BASE_MS, cap_ms=BACKOFF_CAP_MS):
    """Full jitter: uniform in [0, min(cap_ms, base_ms * 2**attempt)]."""
    if attempt > _MAX_ATTEMPT_SHIFT:
        attempt = _MAX_ATTEMPT_SHIFT
    hi = base_ms << attempt
    if hi > cap_ms:
        hi = cap_ms
    return random.getrandbits(30) % (hi + 1)


def tls_context(ca):
    """A client context that trusts only `ca` (DER or PEM bytes) and checks the server's name."""
    import tls

    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED  # type: ignore  # (the default for a client; the stubs lack it)
    ctx.load_verify_locations(ca)
    return ctx


def _enc(s):
    return s.encode() if isinstance(s, str) else s


class MQTTClient(Transport):
    """An MQTT 3.1.1 client implementing Transport: publishes at QoS 1, reads one topic at QoS 1.

    host, port: the broker. client_id, username, password: CONNECT's (str or bytes). sub_topic: the
    only topic read; its messages go to on_ack. pub_topic: where send(None, ...) publishes.
    tls_ca: CA certificate (DER/PEM bytes) -> TLS with CERT_REQUIRED and server_hostname (default
    host). Timing in ms except keepalive_s (0: no keepalive).
    """

    def __init__(
        self,
        host,
        client_id,
        sub_topic,
        pub_topic=None,
        port=0,
        username=None,
        password=None,
        tls_ca=None,
        server_hostname=None,
        keepalive_s=KEEPALIVE_S,
        backoff_base_ms=BACKOFF_BASE_MS,
        backoff_cap_ms=BACKOFF_CAP_MS,
        connect_timeout_ms=CONNECT_TIMEOUT_MS,
        retry_ms=RETRY_MS,
        rx_buffer_bytes=RX_BUFFER_BYTES,
        max_packet=mp.MAX_PACKET,
    ):
        self.host = host
        self.port = port or (TLS_PORT if tls_ca else PORT)
        self._ssl = tls_context(tls_ca) if tls_ca else None
        self._server_hostname = server_hostname or host if tls_ca else None
        self._connect_packet = mp.connect(client_id, username, password, keepalive_s, True)
        self._sub_topic = _enc(sub_topic)
        self._pub_topic = _enc(pub_topic) if pub_topic else None
        self._ping_ms = keepalive_s * 500
        self._backoff_base_ms = backoff_base_ms
        self._backoff_cap_ms = backoff_cap_ms
        self._connect_timeout_ms = connect_timeout_ms
        self._retry_ms = retry_ms
        self._max_packet = max_packet
        self._rx_max = rx_buffer_bytes
        self._rx = bytearray(min(rx_buffer_bytes, RX_RESIDENT_BYTES))
        self._hdr = bytearray(80)  # grown once if a topic needs more
        self._ack4 = bytearray(4)
        self._up = asyncio.Event()  # connected and subscribed
        self._dead = asyncio.Event()  # the session must end (set by the reader or a failed write)
        self._acked = asyncio.Event()  # PUBACK for the message in flight, or the session ended
        self._send_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._writer = None
        self._task = None
        self._pid = 0
        self._inflight = 0
        self._got_pid = 0
        self._sub_pid = 0
        self._sub_code = -1
        self._ping_outstanding = False
        self.on_ack = None
        self.last_error = None
        # Counters for status reports and tests.
        self.sessions = 0  # sessions that came up (CONNACK + SUBACK)
        self.failures = 0  # connection attempts and sessions that ended in an error
        self.retransmits = 0  # PUBLISH sent again with DUP
        self.dropped = 0  # incoming messages not passed on (other topic, oversized)

    # --- Transport ---

    @property
    def connected(self):
        return self._up.is_set()

    async def start(self):
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self):
        task = self._task
        self._task = None
        w = self._writer
        if w is not None and self._up.is_set():
            try:  # a polite goodbye; the broker then closes without waiting for the keepalive
                await asyncio.wait_for_ms(self._write(mp.DISCONNECT_PACKET), 1000)
            except Exception:
                pass
        await end_task(task)
        self._end_session()

    async def send(self, bundle_bytes, topic=None):
        topic = self._pub_topic if topic is None else _enc(topic)
        async with self._send_lock:
            pid = self._next_pid()
            self._inflight = pid
            dup = False
            try:
                while True:
                    await self._up.wait()
                    try:
                        if await asyncio.wait_for_ms(
                            self._attempt(topic, bundle_bytes, pid, dup), self._retry_ms
                        ):
                            return
                    except asyncio.TimeoutError:
                        pass
                    dup = True
                    self.retransmits += 1
            finally:
                self._inflight = 0

    # --- the session ---

    async def connect_once(self):
        """One attempt: open the link, CONNECT, SUBSCRIBE; returns the stream or raises (Refused,
        OSError, ValueError for TLS verification and PacketError, EOFError, asyncio.TimeoutError)."""
        return await asyncio.wait_for_ms(self._open_and_handshake(), self._connect_timeout_ms)

    async def _open_and_handshake(self):
        if self._ssl is not None:
            reader, w = await asyncio.open_connection(
                self.host, self.port, ssl=self._ssl, server_hostname=self._server_hostname
            )
        else:
            reader, w = await asyncio.open_connection(self.host, self.port)
        try:
            self._writer = w
            await self._write(self._connect_packet)
            first, n, rx = await self._read_packet(reader)
            if first >> 4 != mp.CONNACK:
                raise mp.PacketError("expected CONNACK, got packet type %d" % (first >> 4))
            session_present, code = mp.decode_connack(rx, n)
            if code:
                raise Refused(code)
            if session_present:
                raise mp.PacketError("session present after a clean-session CONNECT")
            self._sub_pid = self._next_pid()
            self._sub_code = -1
            self._ping_outstanding = False
            await self._write(mp.subscribe(self._sub_pid, self._sub_topic, 1))
            while self._sub_code < 0:
                await self._handle(reader)
            if self._sub_code == mp.SUBACK_FAILURE:
                raise Refused(self._sub_code)
            return reader
        except BaseException:
            self._writer = None
            w.close()
            raise

    async def _run(self):
        attempt = 0
        while True:
            try:
                reader = await self.connect_once()
                attempt = 0
                self.sessions += 1
                self._dead.clear()
                self._up.set()
                await self._session(reader)
            except Exception as e:
                self.last_error = e
                self.failures += 1
            self._end_session()
            delay = backoff_ms(attempt, self._backoff_base_ms, self._backoff_cap_ms)
            attempt += 1
            await asyncio.sleep_ms(delay)

    async def _session(self, reader):
        reader_task = asyncio.create_task(self._read_loop(reader))
        try:
            while True:
                if self._ping_ms:
                    try:
                        await asyncio.wait_for_ms(self._dead.wait(), self._ping_ms)
                        return
                    except asyncio.TimeoutError:
                        pass
                    if self._ping_outstanding:
                        raise OSError(errno.ETIMEDOUT, "no PINGRESP within keepalive/2")
                    self._ping_outstanding = True
                    await self._write(mp.PINGREQ_PACKET)
                else:
                    await self._dead.wait()
                    return
        finally:
            reader_task.cancel()

    async def _read_loop(self, reader):
        try:
            while True:
                await self._handle(reader)
        except Exception as e:
            self._fail(e)

    def _fail(self, e):
        self.last_error = e
        self.failures += 1
        self._up.clear()
        self._dead.set()

    def _end_session(self):
        self._up.clear()
        w = self._writer
        self._writer = None
        if w is not None:
            try:
                w.close()
            except Exception:
                pass
        self._got_pid = 0
        self._acked.set()  # a send waiting for its PUBACK retransmits after the reconnect

    # --- I/O ---

    def _next_pid(self):
        pid = self._pid % 0xFFFF + 1
        if pid == self._inflight:
            pid = pid % 0xFFFF + 1
        self._pid = pid
        return pid

    async def _write(self, *parts):
        w = self._writer
        if w is None:
            raise OSError(errno.ENOTCONN)
        async with self._write_lock:
            for part in parts:
                w.write(part)
            await w.drain()

    async def _attempt(self, topic, payload, pid, dup):
        """Writes the PUBLISH; True once its PUBACK came, False if the session ended first."""
        self._got_pid = 0
        self._acked.clear()
        hdr = self._header_buffer(topic)
        n = mp.publish_header(hdr, topic, len(payload), 1, pid, dup, False, self._max_packet)
        try:
            await self._write(memoryview(hdr)[:n], payload)
        except Exception as e:  # the link failed (OSError; on a board's TLS stream, ValueError too)
            self._fail(e)
            return False
        await self._acked.wait()
        return self._got_pid == pid

    def _header_buffer(self, topic):
        size = mp.publish_header_size(topic)
        if len(self._hdr) < size:
            self._hdr = bytearray(size)
        return self._hdr

    async def _fill(self, reader, buf, start, end):
        rxv = memoryview(buf)
        while start < end:
            k = await reader.readinto(rxv[start:end])
            if k is None:  # a TLS record not complete yet
                continue
            if not k:
                raise EOFError("broker closed the connection")
            start += k

    async def _read_packet(self, reader):
        """Reads one packet's fixed header, and its body into a buffer when it fits the client's bound;
        returns (first_byte, remaining_length, buffer): self._rx, or one of its own for a longer packet.
        An oversized PUBLISH is handled here (acked, dropped) and (0, 0, self._rx) returned; any other
        oversized packet is a PacketError."""
        rx = self._rx
        await self._fill(reader, rx, 0, 2)
        n = 2
        while True:
            head = mp.decode_fixed_header(rx, n)
            if head is not None:
                break
            await self._fill(reader, rx, n, n + 1)
            n += 1
        first, rl, _ = head
        if rl <= len(rx):
            await self._fill(reader, rx, 0, rl)
            return first, rl, rx
        if rl <= self._rx_max:
            body = bytearray(rl)
            await self._fill(reader, body, 0, rl)
            return first, rl, body
        if first >> 4 != mp.PUBLISH:
            raise mp.PacketError("packet type %d of %d bytes over the buffer" % (first >> 4, rl))
        size = len(rx)
        await self._fill(reader, rx, 0, size)
        _, _, pid, _ = mp.decode_publish(first, rx, size)
        left = rl - size
        while left:
            k = left if left < size else size
            await self._fill(reader, rx, 0, k)
            left -= k
        self.dropped += 1
        if pid:
            await self._write_puback(pid)
        return 0, 0, rx

    async def _write_puback(self, pid):
        mp.puback_into(self._ack4, pid)
        await self._write(self._ack4)

    async def _handle(self, reader):
        first, n, rx = await self._read_packet(reader)
        kind = first >> 4
        if kind == mp.PUBLISH:
            ts, te, pid, ps = mp.decode_publish(first, rx, n)
            cb = self.on_ack
            if self._topic_is(rx, ts, te) and cb is not None:
                try:
                    cb(bytes(memoryview(rx)[ps:n]))
                except Exception as e:  # the app's problem: the link carries on
                    print("mqtt: on_ack raised", repr(e))
            else:
                self.dropped += 1
            rx = None  # a buffer of its own is garbage before the PUBACK's write waits
            if pid:
                await self._write_puback(pid)
        elif kind == mp.PUBACK:
            pid = mp.decode_puback(rx, n)
            if pid == self._inflight:
                self._got_pid = pid
                self._acked.set()
        elif kind == mp.PINGRESP:
            mp.decode_pingresp(n)
            self._ping_outstanding = False
        elif kind == mp.SUBACK:
            pid, code = mp.decode_suback(rx, n)
            if pid == self._sub_pid:
                self._sub_code = code
        elif first:  # (0, 0): an oversized PUBLISH already dealt with
            raise mp.PacketError("unexpected packet type %d" % kind)

    def _topic_is(self, rx, start, end):
        topic = self._sub_topic
        if end - start != len(topic):
            return False
        for i in range(len(topic)):
            if rx[start + i] != topic[i]:
                return False
        return True


def topic(key_id_hex, leaf):
    """pinseal/v1/<key-id-hex>/<leaf> (docs/protocol.md §6)."""
    return b"pinseal/v1/" + key_id_hex + b"/" + leaf


class MqttTransport(MQTTClient):
    """The device's MQTT link, from the "mqtt" section of /config.json (pinseal.config) and the
    device's key id (16 bytes, or its 32 hex digits). User name and client id are the key id hex; it
    publishes to its up topic and reads its ack topic, the only grants the broker's ACL gives a device.

    Keys used: host, port, password, tls (bool), ca (the CA's PEM text, required with tls),
    server_hostname ("" = host), keepalive_s, backoff_max_s; optional tuning (tests): backoff_base_ms,
    connect_timeout_ms, retry_ms, rx_buffer_bytes.
    """

    def __init__(self, mqtt_config, key_id):
        c = mqtt_config
        name = _enc(key_id) if isinstance(key_id, str) else hexlify(key_id)
        if len(name) != 32:
            raise ValueError("mqtt: a key id is 16 bytes (32 hex digits)")
        ca = None
        if c.get("tls"):
            ca = _enc(c.get("ca") or "")
            if not ca:
                raise ValueError("mqtt: tls needs ca (the PEM of the broker's CA)")
        super().__init__(
            c["host"],
            name,
            topic(name, b"ack"),
            topic(name, b"up"),
            port=c.get("port", 0),
            username=name,
            password=c["password"],
            tls_ca=ca,
            server_hostname=c.get("server_hostname") or None,
            keepalive_s=c.get("keepalive_s", KEEPALIVE_S),
            backoff_base_ms=c.get("backoff_base_ms", BACKOFF_BASE_MS),
            backoff_cap_ms=c.get("backoff_max_s", BACKOFF_CAP_MS // 1000) * 1000,
            connect_timeout_ms=c.get("connect_timeout_ms", CONNECT_TIMEOUT_MS),
            retry_ms=c.get("retry_ms", RETRY_MS),
            rx_buffer_bytes=c.get("rx_buffer_bytes", RX_BUFFER_BYTES),
        )
