"""MQTT ingest: paho-mqtt 2.x subscriber with manual PUBACK after commit, and the ack publisher.

The session is persistent (fixed client id, clean_session False) and messages are acknowledged to the
broker by hand, only once the pipeline committed them (or recorded their rejection): if the gateway
dies before that, the broker redelivers them. paho's network thread does nothing but hand each
message to the asyncio pipeline; verification never runs on it.

PUBACKs carry the connection generation they were received in: after a reconnect the broker
redelivers unacknowledged messages (possibly reusing message ids), so a PUBACK for a message of an
earlier connection is dropped instead of acknowledging something else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from pinseal_gateway.acks import ack_topic
from pinseal_gateway.config import MqttSection
from pinseal_gateway.pipeline import Message, Pipeline

log = logging.getLogger(__name__)

UP_TOPIC_FILTER = "pinseal/v1/+/up"
OUTGOING_INFLIGHT = 1000  # acks in flight to the broker at once


class MqttIngest:
    """Connects to the broker, feeds `pipeline`, settles and publishes what the pipeline hands back."""

    def __init__(self, config: MqttSection, password: str | None, pipeline: Pipeline) -> None:
        self.config = config
        self.pipeline = pipeline
        self.connected = threading.Event()
        self._generation = 0
        self._closing = False
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if config.username:
            client.username_pw_set(config.username, password)
        client.max_inflight_messages_set(OUTGOING_INFLIGHT)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self.client = client

    def start(self) -> None:
        """Connect in the background (paho's thread retries until the broker is there)."""
        log.info(
            "connecting to MQTT broker %s:%d as %s", self.config.host, self.config.port, self.config.username
        )
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self.client.loop_start()

    def pause(self) -> None:
        """Stop handing new messages to the pipeline (they stay unacknowledged: the broker keeps them)."""
        self._closing = True

    def stop(self) -> None:
        """Stop consuming and disconnect; call after the pipeline has finished its last group."""
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    # -- paho thread -------------------------------------------------------------------------------

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

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[Any], properties: Any
    ) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error("subscription to %s refused: %s (check the broker ACL)", UP_TOPIC_FILTER, reason_codes)
            return
        self.connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self.connected.clear()
        if not self._closing:
            log.warning("MQTT disconnected (%s); paho reconnects", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._closing:
            return  # not acknowledged: the broker redelivers it to the next run
        token = (self._generation, message.mid, message.qos)
        self.pipeline.submit_threadsafe(Message(message.topic, message.payload, time.time(), token))

    # -- pipeline side (event loop thread) ---------------------------------------------------------

    def settle(self, tokens: Sequence[object]) -> None:
        """PUBACK messages whose outcome is committed."""
        generation = self._generation
        ack = self.client.ack
        for token in tokens:
            gen, mid, qos = token  # type: ignore[misc]
            if qos and gen == generation:
                ack(mid, qos)

    def publish_acks(self, acks: Sequence[tuple[bytes, bytes]]) -> None:
        publish = self.client.publish
        for kid, ack in acks:
            publish(ack_topic(kid), ack, qos=1)
