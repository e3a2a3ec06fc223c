# pinseal.transport: how bundles leave the device and acks come back, whatever the link.
#
#   mqtt_packets  MQTT 3.1.1 packets: pure encode/decode, strict and bounded
#   mqtt          the asyncio MQTT client and MQTTTransport (topics per docs/protocol.md §6)
#   serial_frames serial link frames (docs/protocol.md §10): COBS + CRC-32, pure encode/read, bounded
#   (later: ble, serial, behind the same interface)
#
# The interface every backend implements (the app codes against this, never against a backend):
#
#   t.on_ack = fn          fn(ack_bytes) is called for every message on this device's ack channel, as
#                          received: UNVERIFIED bytes. The app checks them with pinseal.wire.ack.verify
#                          before trusting anything in them. Called from the transport's task: it must
#                          not block (queue the bytes or start a task). Duplicates can arrive (QoS 1).
#   await t.start()        starts the background link task and returns at once (it connects, and
#                          reconnects with backoff, by itself until stop()).
#   t.connected            True while the link is up and ready to carry a send (for MQTT: CONNACK and
#                          the ack subscription's SUBACK received).
#   await t.send(bundle_bytes, topic=None)
#                          sends one message (topic None = this device's bundle channel; MQTT takes
#                          another topic for tests and tools, the broker's ACL decides). Returns once
#                          the LINK accepted it (MQTT: the broker's PUBACK), waiting through disconnects
#                          and retransmitting as needed; it never gives up by itself (wrap it in
#                          asyncio.wait_for_ms to bound it). This is NOT the gateway's ack: the outbox
#                          keeps the bundle until on_ack delivers a verified ack that covers it.
#                          One message is in flight at a time; concurrent sends queue.
#   t.resend_ms            how long the app waits for the gateway's ack before sending the same bundle again:
#                          the link's round trip with room to spare (MQTT 15 s through a broker, a wire 3 s).
#   t.last_error           the exception that ended the last connection attempt or session (None if
#                          none yet): for logs and status, e.g. a refused password or a rejected cert.
#   await t.stop()         ends the link task and closes the connection; send() waits until start().
#
# This file holds only the base class, so importing it loads no backend (RAM is counted in kilobytes).


async def end_task(task):
    """Cancel a transport's background task (None: nothing) and wait until it has ended, whatever it raised:
    a stop must never be stopped by the task it stops."""
    if task is not None:
        task.cancel()
        try:
            await task
        except BaseException:
            pass


class Transport:
    """The base every backend extends; see the module comment for the contract."""

    on_ack = None
    last_error = None
    resend_ms = 15000

    @property
    def connected(self):
        return False

    async def start(self):
        raise NotImplementedError

    async def send(self, bundle_bytes, topic=None):
        raise NotImplementedError

    async def stop(self):
        raise NotImplementedError
