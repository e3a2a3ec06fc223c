"""The MQTT side of Home Assistant discovery: one paho client, its own login, retained messages.

A separate connection from the intake's (which holds a persistent session under the gateway's login;
the broker ties a session to a login, see `broker`), so it has a login of its own, and it may go to
another broker altogether (`homeassistant.broker = "external"`). paho runs the connection in its own
thread and reconnects by itself; the gateway's task (`run.py`) only calls `publish_*` while connected,
and everything is sent again after each (re)connect and each Home Assistant birth message, so nothing
depends on what paho would have queued while the link was down.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from pinseal_gateway.homeassistant.discovery import OFFLINE, ONLINE, Topics

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
KEEPALIVE_S = 30


class HaPublisher:
    """Publishes retained discovery configs, availability and state; listens for Home Assistant's birth."""

    def __init__(
        self,
        topics: Topics,
        *,
        host: str,
        port: int,
        username: str,
        password: str | None,
        client_id: str,
        tls: bool = False,
        ca_file: str = "",
    ) -> None:
        self.topics = topics
        self.host, self.port = host, port
        self._republish = threading.Event()  # set on connect and on a birth: the task sends everything
        self._connected = threading.Event()
        self._stopping = False
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.username_pw_set(username, password)
        if tls:
            client.tls_set(ca_certs=ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        # The broker says "offline" for the gateway when this connection dies without a goodbye.
        client.will_set(topics.gateway_availability, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in paho's thread; it retries until the broker answers."""
        log.info("Home Assistant discovery: connecting to %s:%d", self.host, self.port)
        self.client.connect_async(self.host, self.port, KEEPALIVE_S)
        self.client.loop_start()

    def stop(self) -> None:
        """Say "offline" for the gateway (a clean stop leaves no will to fire), then disconnect."""
        self._stopping = True
        if self._connected.is_set():
            info = self.client.publish(self.topics.gateway_availability, OFFLINE, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def take_republish(self) -> bool:
        """Whether everything must be sent again (a new connection, or Home Assistant announced itself)."""
        if self._republish.is_set():
            self._republish.clear()
            return True
        return False

    # -- publishing (any thread: paho's publish is thread-safe) ----------------------------------

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = True) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)

    # -- paho callbacks (paho's thread) -----------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning(
                "Home Assistant discovery: broker %s:%d refused the connection: %s "
                "(check [homeassistant] username and password file; with the gateway's own broker run "
                "`pinseal-gateway broker-config` and restart Mosquitto)",
                self.host,
                self.port,
                reason,
            )
            return
        log.info("Home Assistant discovery: connected to %s:%d", self.host, self.port)
        client.subscribe(self.topics.status, qos=1)
        client.publish(self.topics.gateway_availability, ONLINE, qos=1, retain=True)
        self._connected.set()
        self._republish.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self._connected.is_set() and not self._stopping:
            log.warning(
                "Home Assistant discovery: connection to %s:%d lost: %s", self.host, self.port, reason
            )
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.topics.status and message.payload.strip() == ONLINE.encode():
            log.info("Home Assistant announced itself; publishing discovery again")
            self._republish.set()
