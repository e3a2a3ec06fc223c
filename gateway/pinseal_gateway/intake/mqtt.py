"""MQTT ingest: a paho-mqtt 2.x session, then the connection's byte stream framed here, manual PUBACKs.

The session is persistent (fixed client id, clean_session False) and messages are acknowledged to the
broker by hand, only once the pipeline committed them (or recorded their rejection): if the gateway
dies before that, the broker redelivers them.

paho is used through its public API only: it opens the connection (`connect`/`reconnect`), writes the
CONNECT, reads and judges the CONNACK (`loop_read` on the first readable events, `on_connect`), writes
the SUBSCRIBE (`subscribe`) and the final DISCONNECT (`disconnect`), and meets the connection's end
(`loop_read` on EOF). From the CONNACK on, the connection's byte stream is read here: one `recv` per
readable event, cut into frames by `pinseal_protocol.mqtt_frames` (the host's one MQTT framing
module): a device's PUBLISH goes to the pipeline, a PUBACK completes an ack in `acks_in_flight`, the
SUBACK opens the gate, a PINGRESP answers the keepalive, which is kept here too. The pipeline's
PUBACKs and acks are framed by the same module and leave in one `send` per writable event.
paho's per-packet reads (a `recv` per fixed-header byte, message and info objects, locks) cost the
event loop more than the rest of a bundle's path on it (docs/benchmarks.md, gateway).

The hand-over is sound because paho reads exactly one packet per `loop_read` here (no QoS 2, nothing
in flight) and never past its end: the bytes after the CONNACK are still in the socket when
`on_connect` returns. That is paho 2.2's behaviour, not a documented promise, so `PAHO_CHECKED` pins
the version it was checked on and gateway/tests/test_gateway_mqtt.py fails when another is installed
(and checks the behaviour itself). Writes never interleave: once paho or this module has started
writing its bytes, it finishes them before the other writes.

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
from pinseal_gateway.broker_link import BrokerLink
from pinseal_gateway.config import MqttSection
from pinseal_gateway.intake.acks_in_flight import AcksInFlight
from pinseal_gateway.link import Inbox, Message
from pinseal_gateway.metrics import Metrics
from pinseal_protocol import mqtt_frames
from pinseal_protocol.mqtt_frames import FrameError

log = logging.getLogger(__name__)

BROKER_HINT = (
    "no broker listens there: start Mosquitto with the files `pinseal-gateway broker-config --config "
    "<gateway.toml> --out <dir>` writes (docs/gateway.md, 'Running under the distribution's Mosquitto')"
)
LOGIN_HINT = (
    "the gateway's login (mqtt.username, mqtt.password_file) is not in the broker's password file: run "
    "`pinseal-gateway broker-config --config <gateway.toml> --out <dir>` again and restart the broker"
)

# The paho-mqtt release whose reads were checked to stop at the end of each packet (see above).
PAHO_CHECKED = "2.2.0"
UP_TOPIC_FILTER = "pinseal/v1/+/up"
READ_CHUNK = 256 * 1024  # bytes taken from the socket per readable event
# A frame above this is no broker's honest PUBLISH (a bundle is at most 2,048 bytes, the broker's own
# max_packet_size is far below): the stream is dropped rather than buffered.
MAX_FRAME_BYTES = 16 * 1024 * 1024
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0
MISC_INTERVAL_S = 1.0  # how often the keepalive is looked after
STOP_TIMEOUT_S = 5.0

_PUBLISH = mqtt_frames.PUBLISH << 4
_PUBACK = mqtt_frames.PUBACK << 4
_SUBACK = mqtt_frames.SUBACK << 4
_PINGRESP = mqtt_frames.PINGRESP << 4


class MqttIngest:
    """Connects to the broker and feeds `inbox`; as the messages' `Link`, settles and publishes acks.

    It knows the pipeline only as an `Inbox`; the pipeline knows it only through the `link` of each
    message it submitted.
    """

    def __init__(
        self,
        config: MqttSection,
        password: str | None,
        inbox: Inbox,
        metrics: Metrics,
        link: BrokerLink | None = None,
    ) -> None:
        self.config = config
        self.inbox = inbox
        self.metrics = metrics
        self.link = link if link is not None else BrokerLink(config.host, config.port)
        self.connected = threading.Event()
        self._generation = 0
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._conn_sock: socket.socket | None = None  # the socket paho opened, from open to close
        self._sock: socket.socket | None = None  # the same, once its stream is read here (the CONNACK)
        self._reading = False
        self._writing = False
        self._splitter = mqtt_frames.FrameSplitter(MAX_FRAME_BYTES)
        self._out = bytearray()  # PUBACKs and acks not yet written; once begun, they finish first
        self._paho_writing = False  # paho started writing its queue: it finishes before `_out`
        self._dropping = False  # the stream broke: read to the end, hand nothing on
        self._last_sent = 0.0
        self._last_received = 0.0
        self._ping_sent_at = 0.0
        self._lost: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._misc: asyncio.Task[None] | None = None
        self.acks_in_flight = AcksInFlight(ack_topic)
        client = mqtt.Client(
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
        assert self._lost is not None
        if self._conn_sock is not None:
            # The last PUBACKs and acks go out before paho writes the DISCONNECT, which closes the socket.
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self._out and self._conn_sock is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if self._conn_sock is not None and self.client.disconnect() == mqtt.MQTT_ERR_SUCCESS:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._lost.wait(), max(0.1, deadline - time.monotonic()))
        for task in (self._task, self._misc):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._conn_sock is not None:  # did not close in time: end it, paho meets the EOF
            with contextlib.suppress(OSError):
                self._conn_sock.shutdown(socket.SHUT_RDWR)
            self.client.loop_read()
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
                self.link.down(f"connection failed: {exc}")
                log.warning(
                    "MQTT connection to %s:%d failed: %s; %s; retrying in %g s",
                    cfg.host,
                    cfg.port,
                    exc,
                    BROKER_HINT
                    if isinstance(exc, ConnectionRefusedError)
                    else "check mqtt.host and mqtt.port",
                    delay,
                )
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
        """Until the CONNACK paho's `loop_misc` times the connection out; from it on, the keepalive here."""
        while self._conn_sock is not None:
            if self._sock is None:
                if self.client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                    return
            else:
                self._keepalive(time.monotonic())
            await asyncio.sleep(MISC_INTERVAL_S)

    def _keepalive(self, now: float) -> None:
        """MQTT 3.1.1 §3.1.2.10: a packet at least every keepalive; no PINGRESP within one: link dead."""
        keepalive_s = self.config.keepalive_s
        if not keepalive_s or self._sock is None:
            return
        if self._ping_sent_at:
            if now - self._ping_sent_at >= keepalive_s and self._last_received < self._ping_sent_at:
                self._drop_stream(f"no PINGRESP within {keepalive_s} s")
        elif now - self._last_sent >= keepalive_s or now - self._last_received >= keepalive_s:
            self._ping_sent_at = now
            self._write(mqtt_frames.PINGREQ_PACKET)

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
        self._conn_sock = sock
        self._sock = None
        self._reset_stream()
        self._reading = False
        self._resume_reading()
        if self._misc is None or self._misc.done():
            self._misc = self._loop.create_task(self._misc_loop(), name="mqtt-keepalive")

    def _reset_stream(self) -> None:
        self._splitter.reset()
        self._out.clear()
        self._paho_writing = self._dropping = False
        self._last_sent = self._last_received = time.monotonic()
        self._ping_sent_at = 0.0

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._closed, sock)

    def _closed(self, sock: socket.socket) -> None:
        assert self._loop is not None and self._lost is not None
        if self._conn_sock is sock:
            self._conn_sock = None
            self._sock = None
            # Nothing written here is lost for good: unacknowledged messages are redelivered, acks resent.
            self._reset_stream()
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

    def _drop_stream(self, why: str) -> None:
        """The stream cannot be trusted further: end the connection (paho meets the EOF, we reconnect)."""
        log.warning("MQTT connection dropped: %s", why)
        self._dropping = True
        sock = self._conn_sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- writing (event loop) ----------------------------------------------------------------------

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._want_write, sock)

    def _want_write(self, sock: socket.socket) -> None:
        assert self._loop is not None
        if sock is not None and sock in (self._conn_sock, self._sock) and not self._writing:
            self._writing = True
            self._loop.add_writer(sock, self._writable)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._write_done, sock)

    def _write_done(self, sock: socket.socket) -> None:
        assert self._loop is not None
        if self._writing and not self._out:
            self._writing = False
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_writer(sock)

    def _write(self, data: bytes) -> None:
        """Queue bytes of ours for the next writable event (only on a stream read here: after the CONNACK)."""
        sock = self._sock
        if sock is not None:
            self._out += data
            self._want_write(sock)

    def _writable(self) -> None:
        """Whoever started writing finishes first, so paho's packets and ours never interleave."""
        client = self.client
        sock = self._conn_sock
        if sock is None:
            return
        if self._paho_writing:
            client.loop_write()
            if client.want_write():
                return
            self._paho_writing = False
        if self._out:
            try:
                sent = sock.send(self._out)
            except BlockingIOError:
                return
            except OSError as exc:
                # The connection is broken: the socket turns readable and paho's read handles the loss.
                log.debug("MQTT send failed: %s", exc)
                self._out.clear()
                sent = 0
            del self._out[:sent]
            self._last_sent = time.monotonic()
            if self._out:
                return
        if client.want_write():
            self._paho_writing = True
            client.loop_write()  # after a DISCONNECT paho closes the socket
            if client.want_write():
                return
            self._paho_writing = False
        if self._writing and self._conn_sock is sock and not self._out:
            self._writing = False
            assert self._loop is not None
            self._loop.remove_writer(sock)

    # -- reading (event loop) ----------------------------------------------------------------------

    def _readable(self) -> None:
        sock = self._conn_sock
        if sock is None:
            return
        if self._sock is None:
            self.client.loop_read()  # paho reads one packet: the CONNACK (then `_on_connect` hands over)
            return
        try:
            data = sock.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.client.loop_read()  # paho meets the EOF or error itself and handles the disconnect
            return
        if not self._dropping:
            self._frames_in(data)
        if not self.inbox.has_room():
            self._pause_reading()

    def _frames_in(self, data: bytes) -> None:
        """Every whole frame `data` completes, in order; an incomplete one waits for the next read.

        A QoS 0/1 PUBLISH (a device's bundle) goes to the pipeline: with manual acks this is what paho
        would hand on. A PUBACK completes an ack of ours, the SUBACK opens the gate, a PINGRESP answers
        the keepalive. A malformed frame, or one a broker never sends a subscriber, ends the connection.
        """
        self._last_received = time.monotonic()
        try:
            buf, spans = self._splitter.feed(data)
        except FrameError as exc:
            self._drop_stream(f"malformed frame from the broker: {exc}")
            return
        received_at = time.time()
        for first, body, end in spans:
            kind = first & 0xF0
            if kind == _PUBLISH:
                try:
                    topic_start, topic_end, mid, payload = mqtt_frames.publish_fields(first, buf, body, end)
                except FrameError as exc:
                    self._drop_stream(f"malformed PUBLISH from the broker: {exc}")
                    return
                if self._closing:
                    continue  # not acknowledged: the broker redelivers it to the next run
                topic = buf[topic_start:topic_end].decode("utf-8", "replace")
                token = (self._generation, mid, (first >> 1) & 0x03)
                self.inbox.submit_nowait(Message(topic, buf[payload:end], received_at, token, self))
            elif first == _PUBACK and end - body == 2:
                self.acks_in_flight.acknowledged(buf[body] << 8 | buf[body + 1])
            elif first == _PINGRESP and end == body:
                self._ping_sent_at = 0.0
            elif first == _SUBACK and end - body == 3:
                self._subscribed(buf[end - 1])
            else:
                self._drop_stream(f"unexpected packet 0x{first:02x} of {end - body} bytes from the broker")
                return

    def _pause_reading(self) -> None:
        if self._reading and self._conn_sock is not None:
            assert self._loop is not None
            self._loop.remove_reader(self._conn_sock)
            self._reading = False

    def _resume_reading(self) -> None:
        if not self._reading and self._conn_sock is not None and self.inbox.has_room():
            assert self._loop is not None
            self._loop.add_reader(self._conn_sock, self._readable)
            self._reading = True

    # -- session (event loop) ----------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self.link.down(f"refused: {reason_code}")
            log.error(
                "MQTT broker refused the connection: %s; %s",
                reason_code,
                LOGIN_HINT
                if "authori" in str(reason_code).lower() or "password" in str(reason_code).lower()
                else "see the broker's log",
            )
            return
        if self._conn_sock is not None:
            self._sock = self._conn_sock  # from here on the stream is read here, not by paho
        self._generation += 1
        log.info(
            "MQTT connected (session present: %s), subscribing %s", flags.session_present, UP_TOPIC_FILTER
        )
        client.subscribe(UP_TOPIC_FILTER, qos=1)
        # MQTT 3.1.1 §4.4: unacknowledged PUBLISHes go again, in order, on a reconnect with the session kept.
        resend = self.acks_in_flight.resend()
        if resend:
            self._write(resend)

    def _subscribed(self, return_code: int) -> None:
        if return_code == mqtt_frames.SUBACK_FAILURE:
            self.link.down(f"subscription to {UP_TOPIC_FILTER} refused")
            log.error("subscription to %s refused (check the broker ACL)", UP_TOPIC_FILTER)
            return
        self.connected.set()
        self.metrics.mqtt_subscribed.set(1)
        self.link.up()
        log.info("subscribed to %s: receiving bundles", UP_TOPIC_FILTER)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self.connected.clear()
        self.metrics.mqtt_subscribed.set(0)
        self.link.down(f"disconnected: {reason_code}")
        if not self._closing:
            log.warning("MQTT disconnected (%s); reconnecting", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Only if paho ever read past the CONNACK itself (see PAHO_CHECKED): the message is not lost."""
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
        if self._sock is None:
            return  # the connection is gone: the broker redelivers, the next run acks
        pubacks = mqtt_frames.pubacks(
            [mid for gen, mid, qos in tokens if qos == 1 and gen == generation]  # type: ignore[misc]
        )
        if pubacks:
            self._write(pubacks)

    def publish_acks(self, acks: Sequence[tuple[bytes, bytes]]) -> None:
        """QoS 1 PUBLISHes of the signed acks, written with the next batch of output (see `acks_in_flight`).

        Without a connection they wait in flight and go out, as resends, once the session is back.
        """
        packets = self.acks_in_flight.publish(acks)
        self._write(packets)
