"""MQTT uplink: publish one stored batch body at QoS 1 to an upstream broker; sent = PUBACK received.

MQTT v5, so the batch hash travels as a user property (`batch-hash`, hex) next to the exact stored
bytes, on the one configured topic; the upstream consumer deduplicates by it, since QoS 1 (and our
own retries after a lost PUBACK) may deliver a batch more than once. paho runs its network loop in
its own thread; callbacks only hand results over to the asyncio loop, never touch our state, so no
lock is shared with paho's internal ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pinseal_gateway.uplink import SendResult

log = logging.getLogger(__name__)

BATCH_HASH_PROPERTY = "batch-hash"
TIMEOUT_S = 30.0
KEEPALIVE_S = 30


class MqttUplink:
    """`UplinkBackend` over paho-mqtt 2.x; connects on first use and reconnects on its own."""

    def __init__(
        self, host: str, port: int, topic: str, *, client_id: str, timeout_s: float = TIMEOUT_S
    ) -> None:
        self.host = host
        self.port = port
        self.topic = topic
        self.client_id = client_id
        self.timeout_s = timeout_s
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._pending: dict[int, asyncio.Future[SendResult]] = {}

    async def send(self, batch_hash: bytes, body: bytes) -> SendResult:
        client = self._start()
        if not self._connected.is_set():
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._connected.wait()
            except TimeoutError:
                return SendResult.retry(f"not connected to {self.host}:{self.port}")
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [(BATCH_HASH_PROPERTY, batch_hash.hex())]
        loop = asyncio.get_running_loop()
        done: asyncio.Future[SendResult] = loop.create_future()
        info = client.publish(self.topic, body, qos=1, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return SendResult.retry(f"publish failed: {mqtt.error_string(info.rc)}")
        # Registered before this coroutine yields; the PUBACK callback reaches us through the loop, so it
        # cannot be processed before this line has run.
        self._pending[info.mid] = done
        try:
            async with asyncio.timeout(self.timeout_s):
                return await done
        except TimeoutError:
            return SendResult.retry(f"no PUBACK within {self.timeout_s:g} s")
        finally:
            self._pending.pop(info.mid, None)

    def _start(self) -> mqtt.Client:
        if self._client is not None:
            return self._client
        self._loop = asyncio.get_running_loop()
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.reconnect_delay_set(1, 30)
        client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)
        client.loop_start()
        self._client = client
        return client

    # ---- paho callbacks (network thread) ---------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("uplink MQTT: %s:%s refused the connection: %s", self.host, self.port, reason)
            return
        log.info("uplink MQTT: connected to %s:%s", self.host, self.port)
        self._to_loop(self._connected.set)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._to_loop(self._connected.clear)
        log.warning("uplink MQTT: disconnected from %s:%s (%s)", self.host, self.port, reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._to_loop(self._acked, mid, reason)

    def _to_loop(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed while paho still ran: nobody waits
            loop.call_soon_threadsafe(fn, *args)

    # ---- back on the asyncio loop ----------------------------------------------------------------------

    def _acked(self, mid: int, reason: Any) -> None:
        done = self._pending.get(mid)
        if done is None or done.done():
            return  # a PUBACK for an attempt we already gave up on
        if reason is not None and getattr(reason, "is_failure", False):
            done.set_result(SendResult.retry(f"broker refused the publish: {reason}"))
        else:
            done.set_result(SendResult.sent("PUBACK"))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
        for done in self._pending.values():
            if not done.done():
                done.cancel()
