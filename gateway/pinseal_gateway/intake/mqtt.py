"""MQTT ingest: paho-mqtt 2.x subscriber with manual PUBACK after commit, and the ack publisher.

The session is persistent (fixed client id, clean_session False) and messages are acknowledged to the
broker by hand, only once the pipeline committed them (or recorded their rejection): if the gateway
dies before that, the broker redelivers them.

The paho client has no thread of its own: the asyncio loop drives it through paho's socket callbacks
(`on_socket_open/close/register_write/unregister_write` with `loop_read`, `loop_write`, `loop_misc`),
and the PUBACKs and acks the pipeline issues after a commit are written from that thread too. Reads
and writes are batched: one `recv` per readable event, split into MQTT packets here; the kinds that
come once per bundle are handled here without paho's per-packet objects and per-byte reads: a device's
QoS 1 PUBLISH goes to the pipeline (what paho does with it under manual acks), the gateway's QoS 1 ack
PUBLISHes are written and tracked by `acks_in_flight` (paho has no outgoing QoS 1 messages at all),
and the broker's PUBACKs for them complete them there. Every other packet goes to paho whole and in
order. Everything queued by the time the socket is writable goes out in one `send`. Verification
never runs on this thread's hot path.

Backpressure: when the pipeline holds `pipeline.queue_size` messages, the socket is no longer read
until it has room again (TCP then stops the broker; unacknowledged messages stay with the broker).

PUBACKs carry the connection generation they were received in: after a reconnect the broker
redelivers unacknowledged messages (possibly reusing message ids), so a PUBACK for a message of an
earlier connection is dropped instead of acknowledging something else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from pinseal_gateway.acks import ack_topic
from pinseal_gateway.config import MqttSection
from pinseal_gateway.intake.acks_in_flight import AcksInFlight
from pinseal_gateway.link import Inbox, Message
from pinseal_gateway.metrics import Metrics

log = logging.getLogger(__name__)

UP_TOPIC_FILTER = "pinseal/v1/+/up"
READ_CHUNK = 256 * 1024  # bytes taken from the socket per readable event
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0
MISC_INTERVAL_S = 1.0  # keepalive pings and their timeout (paho's loop_misc)
STOP_TIMEOUT_S = 5.0


_PUBACK_HEAD = b"\x40\x02"  # PUBACK, remaining length 2 (MQTT 3.1.1 §3.4)


class _BatchingClient(mqtt.Client):
    """A paho client whose socket I/O is batched by the caller (paho 2.2's `_sock_recv`/`_sock_send`).

    `feed(data)` hands paho the bytes of one large `recv`; paho's small reads are served from them and
    fall through to the socket only when they are used up. While `corked`, paho's writes are collected
    in `wbuf` for the caller to send at once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rbuf = b""
        self.rpos = 0
        self.wbuf = bytearray()
        self.corked = False

    def feed(self, data: bytes) -> None:
        self.rbuf = data
        self.rpos = 0

    def buffered(self) -> int:
        return len(self.rbuf) - self.rpos

    def drop_buffers(self) -> None:
        self.rbuf = b""
        self.rpos = 0
        self.wbuf.clear()

    def _sock_recv(self, bufsize: int) -> bytes:
        pos = self.rpos
        if pos < len(self.rbuf):
            end = min(pos + bufsize, len(self.rbuf))
            self.rpos = end
            return self.rbuf[pos:end]
        if self.rbuf:
            raise BlockingIOError  # a fed packet is used up: paho must not read past it
        return super()._sock_recv(bufsize)

    def mark_received(self) -> None:
        """Bytes arrived: what paho's keepalive watches (it sees only the packets handed to it)."""
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()

    def _sock_send(self, buf: bytes | bytearray) -> int:
        if self.corked:
            self.wbuf += buf
            return len(buf)
        return super()._sock_send(buf)

    def flush(self) -> bool:
        """Send what was collected; True when everything went out (or the connection is gone)."""
        if not self.wbuf:
            return True
        sock = self._sock
        if sock is None:
            self.wbuf.clear()
            return True
        try:
            sent = sock.send(self.wbuf)
        except BlockingIOError:
            return False
        except OSError as exc:
            # The connection is broken: the socket turns readable and paho's read handles the loss.
            # Nothing here is lost for good: unacknowledged messages are redelivered, acks resent.
            log.debug("MQTT send failed: %s", exc)
            self.wbuf.clear()
            return True
        del self.wbuf[:sent]
        return not self.wbuf

    def _sock_close(self) -> None:
        # A DISCONNECT (or anything else collected) goes out before paho closes the socket.
        if self.wbuf and self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.send(self.wbuf)
        self.drop_buffers()
        super()._sock_close()


class MqttIngest:
    """Connects to the broker and feeds `inbox`; as the messages' `Link`, settles and publishes acks.

    It knows the pipeline only as an `Inbox`; the pipeline knows it only through the `link` of each
    message it submitted.
    """

    def __init__(self, config: MqttSection, password: str | None, inbox: Inbox, metrics: Metrics) -> None:
        self.config = config
        self.inbox = inbox
        self.metrics = metrics
        self.connected = threading.Event()
        self._generation = 0
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._sock: socket.socket | None = None
        self._reading = False
        self._writing = False
        self._pending = b""  # the incomplete packet at the end of the last read
        self._lost: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._misc: asyncio.Task[None] | None = None
        self.acks_in_flight = AcksInFlight(ack_topic)
        client = _BatchingClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if config.username:
            client.username_pw_set(config.username, password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        self.client = client

    def start(self) -> None:
        """Connect in the background (a task of the running loop retries until the broker is there)."""
        log.info(
            "connecting to MQTT broker %s:%d as %s", self.config.host, self.config.port, self.config.username
        )
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._lost = asyncio.Event()
        self.inbox.on_room(self._resume_reading)
        self._task = self._loop.create_task(self._connection_loop(), name="mqtt-ingest")

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The connection task (after `start`): the daemon watches it; nothing is received without it."""
        return self._task

    def pause(self) -> None:
        """Stop handing new messages to the pipeline (they stay unacknowledged: the broker keeps them)."""
        self._closing = True

    async def stop(self) -> None:
        """Flush what the pipeline settled and disconnect; call after the pipeline finished its last group."""
        self._closing = True
        if self._sock is not None and self.client.disconnect() == mqtt.MQTT_ERR_SUCCESS:
            # The DISCONNECT is queued behind the last PUBACKs and acks; paho closes after writing it.
            assert self._lost is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), STOP_TIMEOUT_S)
        for task in (self._task, self._misc):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._sock is not None:  # did not close in time
            self.client._sock_close()
        self.connected.clear()

    # -- connection management (event loop) --------------------------------------------------------

    async def _connection_loop(self) -> None:
        assert self._loop is not None and self._lost is not None
        client = self.client
        cfg = self.config
        delay = RECONNECT_MIN_S
        first = True
        while not self._closing:
            self._lost.clear()
            try:
                # The TCP connect may block (a remote broker): off the loop; the socket callbacks it
                # triggers are passed back to the loop thread.
                if first:
                    connect = functools.partial(client.connect, cfg.host, cfg.port, cfg.keepalive_s)
                else:
                    connect = client.reconnect
                await self._loop.run_in_executor(None, connect)
            except (OSError, mqtt.WebsocketConnectionError) as exc:
                log.warning("MQTT connection to %s:%d failed: %s", cfg.host, cfg.port, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            first = False
            started = time.monotonic()
            await self._lost.wait()
            if time.monotonic() - started > RECONNECT_MAX_S:
                delay = RECONNECT_MIN_S
            if self._closing:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _misc_loop(self) -> None:
        while self.client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:
            await asyncio.sleep(MISC_INTERVAL_S)

    def _in_loop(self, fn: Any, *args: Any) -> None:
        """Run `fn` now if on the loop thread, else hand it to the loop (callbacks from the connect)."""
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._opened, sock)

    def _opened(self, sock: socket.socket) -> None:
        assert self._loop is not None
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._pending = b""
        self._reading = False
        self._resume_reading()
        if self._misc is None or self._misc.done():
            self._misc = self._loop.create_task(self._misc_loop(), name="mqtt-keepalive")

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._closed, sock)

    def _closed(self, sock: socket.socket) -> None:
        assert self._loop is not None and self._lost is not None
        if self._sock is sock:
            self._sock = None
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(sock)
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(sock)
        self._reading = self._writing = False
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        self.connected.clear()
        self._lost.set()

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._want_write, sock)

    def _want_write(self, sock: socket.socket) -> None:
        assert self._loop is not None
        if sock is self._sock and not self._writing:
            self._writing = True
            self._loop.add_writer(sock, self._writable)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._write_done, sock)

    def _write_done(self, sock: socket.socket) -> None:
        assert self._loop is not None
        if self._writing and not self.client.wbuf:
            self._writing = False
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_writer(sock)

    def _writable(self) -> None:
        client = self.client
        client.corked = True
        try:
            client.loop_write()
        finally:
            client.corked = False
        sock = self._sock
        if client.flush() and not client.want_write() and sock is not None and self._writing:
            self._writing = False
            assert self._loop is not None
            self._loop.remove_writer(sock)

    def _readable(self) -> None:
        client = self.client
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._pending = b""
            client.loop_read()  # paho meets the EOF or error itself and handles the disconnect
            return
        client.mark_received()
        buf = self._pending + data if self._pending else data
        self._pending = buf[self._dispatch(buf, sock) :]
        if not self.inbox.has_room():
            self._pause_reading()

    def _dispatch(self, buf: bytes, sock: socket.socket) -> int:
        """Handle every complete MQTT packet in `buf`, in order; returns where the incomplete rest starts.

        The two packets that come once per bundle are handled here: a QoS 0/1 PUBLISH (a device's
        bundle) goes straight to the pipeline, an MQTT 3.1.1 PUBACK for an ack completes it in
        `acks_in_flight`. With manual acks paho keeps no state for an incoming QoS 1 PUBLISH, so this
        is what paho would do with it, minus its per-packet objects and per-byte reads.
        Every other packet (CONNACK, SUBACK, PINGRESP, anything unexpected or malformed) is handed to
        paho whole, in its place in the stream, so connection state changes in order.
        """
        n = len(buf)
        pos = 0
        received_at = time.time()
        while n - pos >= 2:
            first = buf[pos]
            length = buf[pos + 1]
            body = pos + 2
            if length & 0x80:  # MQTT 3.1.1 §2.2.3: up to four length bytes
                length &= 0x7F
                shift = 7
                while True:
                    if body >= n:
                        return pos
                    byte = buf[body]
                    body += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                    shift += 7
                    if shift > 21:  # malformed: paho reports it and drops the connection
                        self._to_paho(buf[pos:])
                        return n
            end = body + length
            if end > n:
                return pos
            if (first & 0xF0) == 0x30 and (first & 0x06) != 0x06 and (first & 0x06) != 0x04:
                if not self._publish_packet(first, buf, body, end, received_at):
                    self._to_paho(buf[pos:end])
            elif (
                first == 0x40
                and length == 2
                and self.acks_in_flight.acknowledged((buf[body] << 8) | buf[body + 1])
            ):
                pass
            else:
                self._to_paho(buf[pos:end])
            if self._sock is not sock:
                return n  # paho closed the connection: the rest belongs to a dead session
            pos = end
        return pos

    def _publish_packet(self, first: int, buf: bytes, body: int, end: int, received_at: float) -> bool:
        """A QoS 0 or 1 PUBLISH to the pipeline; False to leave an odd one (bad topic) to paho."""
        qos = (first >> 1) & 0x03
        topic_end = body + 2 + ((buf[body] << 8) | buf[body + 1])
        payload_start = topic_end + 2 if qos else topic_end
        if payload_start > end:
            return False
        try:
            topic = buf[body + 2 : topic_end].decode("utf-8")
        except UnicodeDecodeError:
            return False
        if self._closing:
            return True  # not acknowledged: the broker redelivers it to the next run
        mid = (buf[topic_end] << 8) | buf[topic_end + 1] if qos else 0
        token = (self._generation, mid, qos)
        self.inbox.submit_nowait(Message(topic, buf[payload_start:end], received_at, token, self))
        return True

    def _to_paho(self, packet: bytes) -> None:
        """Let paho read and handle one whole packet (it never reaches past it to the socket)."""
        client = self.client
        client.feed(packet)
        client.loop_read()
        client.feed(b"")

    def _pause_reading(self) -> None:
        if self._reading and self._sock is not None:
            assert self._loop is not None
            self._loop.remove_reader(self._sock)
            self._reading = False

    def _resume_reading(self) -> None:
        if not self._reading and self._sock is not None and self.inbox.has_room():
            assert self._loop is not None
            self._loop.add_reader(self._sock, self._readable)
            self._reading = True

    # -- paho callbacks (event loop) ---------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker refused the connection: %s", reason_code)
            return
        self._generation += 1
        log.info(
            "MQTT connected (session present: %s), subscribing %s", flags.session_present, UP_TOPIC_FILTER
        )
        client.subscribe(UP_TOPIC_FILTER, qos=1)
        # MQTT 3.1.1 §4.4: unacknowledged PUBLISHes go again, in order, on a reconnect with the session kept.
        resend = self.acks_in_flight.resend()
        if resend and self._sock is not None:
            self.client.wbuf += resend
            self._want_write(self._sock)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[Any], properties: Any
    ) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error("subscription to %s refused: %s (check the broker ACL)", UP_TOPIC_FILTER, reason_codes)
            return
        self.connected.set()
        self.metrics.mqtt_subscribed.set(1)
        log.info("subscribed to %s: receiving bundles", UP_TOPIC_FILTER)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self.connected.clear()
        self.metrics.mqtt_subscribed.set(0)
        if not self._closing:
            log.warning("MQTT disconnected (%s); reconnecting", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._closing:
            return  # not acknowledged: the broker redelivers it to the next run
        token = (self._generation, message.mid, message.qos)
        self.inbox.submit_nowait(Message(message.topic, message.payload, time.time(), token, self))

    # -- Link: called by the pipeline (event loop thread) -----------------------------------------

    def settle(self, tokens: Sequence[object]) -> None:
        """PUBACK messages whose outcome is committed.

        A PUBACK is four fixed bytes and, under manual acks, paho keeps no state for it: the whole
        group's go into the write buffer at once (what `client.ack` would queue one call each).
        """
        generation = self._generation
        sock = self._sock
        if sock is None:
            return  # the connection is gone: the broker redelivers, the next run acks
        pubacks = b"".join(
            [
                _PUBACK_HEAD + mid.to_bytes(2, "big")
                for gen, mid, qos in tokens
                if qos == 1 and gen == generation
            ]  # type: ignore[misc]
        )
        if pubacks:
            self.client.wbuf += pubacks
            self._want_write(sock)

    def publish_acks(self, acks: Sequence[tuple[bytes, bytes]]) -> None:
        """QoS 1 PUBLISHes of the signed acks, written with the next batch of output (see `acks_in_flight`).

        Without a connection they wait in flight and go out, as resends, once the session is back.
        """
        packets = self.acks_in_flight.publish(acks)
        sock = self._sock
        if sock is not None:
            self.client.wbuf += packets
            self._want_write(sock)
