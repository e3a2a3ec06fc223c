"""The generated Mosquitto configuration under attack, on the real broker (issue 11 #4, #5).

A registered device knows every client id that matters (the gateway's is a fixed string in its config,
a device's is its public key id), so the broker must tie a session to the login, not to the client id.
And a client that has not even authenticated must not make the broker buffer what it declares.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from pinseal_gateway import broker
from pinseal_protocol import bundle as pbundle
from pinseal_protocol import mqtt_frames


def impostor(port: int, device, client_id: str) -> mqtt.Client:
    """`device`'s own login with somebody else's client id and a clean session; waits for CONNACK."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.username_pw_set(device.kid_hex, device.password)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    assert connected.wait(10), "the impostor's own login was refused"
    return client


def close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def takeovers(env) -> list[str]:
    """Mosquitto's notice for a client id taken over by a new connection."""
    log = env.broker_dir / "mosquitto.log"
    return [line for line in log.read_text().splitlines() if "already connected" in line]


def test_a_device_cannot_take_over_the_gateway_or_another_device(env, gateway):
    a, b, c = env.devices
    peer_a = env.device_peer(a)
    impostors = []
    try:
        first = a.seal()
        peer_a.send(first)
        peer_a.acks_for({pbundle.bundle_hash(first)})
        a_client_id = peer_a.client._client_id.decode()
        impostors = [
            impostor(env.port, b, env.config.mqtt.client_id),
            impostor(env.port, b, env.config.mqtt.username),
            impostor(env.port, c, a_client_id),
            impostor(env.port, c, a.kid_hex),
        ]
        time.sleep(0.5)  # a takeover's reconnect would happen now
        # the gateway's subscription keeps receiving and a's connection keeps its acks
        later = [a.seal() for _ in range(3)]
        for raw in later:
            peer_a.send(raw)
        peer_a.acks_for({pbundle.bundle_hash(r) for r in later}, timeout=10)
    finally:
        for client in impostors:
            close(client)
        peer_a.close()
    # only the impostors' own logins replaced each other; nobody else's connection was closed
    victims = (a.kid_hex, env.config.mqtt.username, env.config.mqtt.client_id, a_client_id)
    assert [line for line in takeovers(env) if any(f"Client {v} " in line for v in victims)] == []
    assert len(takeovers(env)) == 2  # b's second impostor replaced its first; c's likewise


def test_the_gateway_session_survives_a_device_using_its_client_id(env, gateway):
    """A clean-session CONNECT with the gateway's client id used to discard its persistent session,
    and with it every bundle the broker held for the gateway while it was down."""
    a, b, _ = env.devices
    gateway.stop()  # the broker keeps the gateway's persistent session (and queues for it)
    peer_a = env.device_peer(a)
    try:
        raw = a.seal()
        peer_a.send(raw)  # queued in the gateway's session while it is down
        for client_id in (env.config.mqtt.client_id, env.config.mqtt.username):
            close(impostor(env.port, b, client_id))
        running = type(gateway)(env.config)  # the same gateway again
        try:
            peer_a.acks_for({pbundle.bundle_hash(raw)}, timeout=10)
        finally:
            running.stop()
    finally:
        peer_a.close()


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


SENT_LIMIT = 16 * 1024 * 1024  # what the test sends at most of the declared 100 MB


def send_huge_connect(port: int) -> int:
    """A CONNECT declaring 100 MB, streamed until the broker drops it (or SENT_LIMIT); bytes sent."""
    sent = 0
    chunk = bytes(64 * 1024)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"\x10" + mqtt_frames.encode_remaining_length(100_000_000))
        try:
            while sent < SENT_LIMIT:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.settimeout(2)
            sock.recv(1)  # the broker closes a connection it will not serve
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
    return sent


def test_an_unauthenticated_huge_connect_is_dropped_with_memory_flat(env, gateway):
    pid = env.broker_proc.pid  # type: ignore[attr-defined]
    before = vm_rss_kib(pid)
    sent = send_huge_connect(env.port)
    after = vm_rss_kib(pid)
    assert after - before < 2048, f"broker RSS grew {after - before} KiB after {sent} bytes of one CONNECT"
    assert sent < SENT_LIMIT, "the broker read 16 MB of a CONNECT without dropping it"
    # honest traffic is unaffected
    device = env.devices[0]
    peer = env.device_peer(device)
    try:
        raw = device.seal()
        peer.send(raw)
        peer.acks_for({pbundle.bundle_hash(raw)})
    finally:
        peer.close()


def test_the_packet_limit_carries_the_largest_bundle_and_home_assistant_discovery():
    topic = "pinseal/v1/" + "f" * 16 + "/up"
    largest_publish = 1 + 4 + 2 + len(topic) + 2 + pbundle.MAX_SIZE  # header, topic, packet id, payload
    assert 16 * largest_publish <= broker.MAX_PACKET_SIZE
    assert broker.MESSAGE_SIZE_LIMIT >= 16 * 1024  # discovery payloads are a few KiB
    conf = broker.conf_text(
        host="127.0.0.1",
        port=1883,
        password_file=Path("p"),
        acl_file=Path("a"),
        persistence_dir=None,
        run_as=None,
        log_file=None,
    )
    assert f"max_packet_size {broker.MAX_PACKET_SIZE}" in conf.splitlines()
