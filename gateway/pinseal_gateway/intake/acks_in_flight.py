"""The gateway's QoS 1 ack PUBLISHes between writing them and the broker's PUBACK (MQTT 3.1.1 §4.3.2).

Acks are the gateway's only outgoing QoS 1 messages, one per bundle. Going through paho's `publish` cost
each of them a message object, a message-info object with its own lock and condition, a topic check and
the in-flight bookkeeping (~16 us of the event loop's time per bundle, measured with py-spy under
`make bench-gateway`): here an ack is one bytes object, kept by packet id until its PUBACK. What MQTT
asks of a client holding them is kept: packet ids unique among the unacknowledged, and after a reconnect
(the session is persistent) every unacknowledged PUBLISH sent again, in order, with the DUP flag.

Pure bookkeeping, no I/O: `MqttIngest` writes what `publish` and `resend` return. The packets are
framed by `pinseal_protocol.mqtt_frames`, the host's one MQTT framing module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from pinseal_protocol import mqtt_frames

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 60_000  # below the 65,535 packet ids; beyond it the oldest ack is given up


class AcksInFlight:
    """Packet ids and PUBLISH packets of the acks the broker has not acknowledged yet."""

    def __init__(self, topic_of: Callable[[bytes], str]) -> None:
        self._topic_of = topic_of
        self._packets: dict[int, bytes] = {}  # packet id -> PUBLISH packet, oldest first
        self._topics: dict[bytes, bytes] = {}  # device kid -> its ack topic, encoded
        self._last_id = 0
        self.given_up = 0

    def __len__(self) -> int:
        return len(self._packets)

    def publish(self, acks: Iterable[tuple[bytes, bytes]]) -> bytes:
        """The QoS 1 PUBLISH packets for (device kid, ack bytes), now in flight, to be written in order."""
        packets = self._packets
        out = []
        for kid, ack in acks:
            topic = self._topics.get(kid)
            if topic is None:
                topic = self._topics[kid] = self._topic_of(kid).encode()
            if len(packets) >= MAX_IN_FLIGHT:
                self._give_up_oldest()
            packet_id = self._new_id()
            packet = mqtt_frames.publish(topic, ack, 1, packet_id)
            packets[packet_id] = packet
            out.append(packet)
        return b"".join(out)

    def acknowledged(self, packet_id: int) -> bool:
        """The broker's PUBACK for `packet_id`; False when no ack of ours has that id."""
        return self._packets.pop(packet_id, None) is not None

    def resend(self) -> bytes:
        """Every unacknowledged PUBLISH again, oldest first, with DUP set: after a reconnect."""
        return b"".join([mqtt_frames.as_resend(p) for p in self._packets.values()])

    def _new_id(self) -> int:
        packet_id = self._last_id
        while True:
            packet_id = packet_id % 65535 + 1
            if packet_id not in self._packets:
                self._last_id = packet_id
                return packet_id

    def _give_up_oldest(self) -> None:
        # The broker has left 60,000 acks unacknowledged. Dropping one loses nothing stored: its device
        # sends the bundle again and gets the ack for the duplicate.
        del self._packets[next(iter(self._packets))]
        self.given_up += 1
        if self.given_up == 1 or self.given_up % 1000 == 0:
            log.warning("%d acks the broker never acknowledged were given up", self.given_up)
