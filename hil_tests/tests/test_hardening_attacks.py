"""Issue 11's attacks against a real stack, honest devices running alongside, each ending in exact accounting.

Every scenario: three honest devices (pinseal_devkit.simdevice, outbox until a verified ack) produce while one
registered device, mallory, attacks. The gateway must reject each attack with the documented reason (its
rejections table and its metrics agree), and every honest reading must reach the network ingest exactly
once with its values unchanged (pinseal_hil.scenario.Scenario.finish). Where the broker's ACL stops an
attack, nothing of it reaches the gateway at all.
"""

from __future__ import annotations

import contextlib
import os
import time

import paho.mqtt.client as mqtt
import pytest

from pinseal_devkit.simdevice import thp_reading
from pinseal_hil.scenario import scenario
from pinseal_protocol import bundle as pbundle
from pinseal_protocol import cose, dcbor

pytestmark = [pytest.mark.broker]

HONEST = 3
BUNDLES = 25  # per honest device: 0.05 s apart, so the attacks land while they flow
MAX_HONEST_ACK_S = 5.0


def signed_by(signer, kid: bytes, *, seq: int, prev: bytes = pbundle.ZERO_PREV, n: int = 1) -> bytes:
    """A bundle carrying `kid` in its protected header but signed by `signer`'s key."""
    now = int(time.time())
    payload = pbundle.payload_map(
        boot=1,
        seq=seq,
        prev=prev,
        status=pbundle.Status(3900, -60, 10, 0, 0),
        time_source=1,
        readings=[thp_reading(seq + i, now) for i in range(n)],
    )
    return cose.sign1(dcbor.encode(payload), signer, pbundle.protected_header(kid))


def test_forged_signatures_are_rejected_and_honest_devices_unaffected(tmp_path) -> None:
    with scenario("attack: forged signature", tmp_path) as s:
        s.honest(HONEST, bundles=BUNDLES)
        mallory = s.attacker()
        s.start()
        for i in range(5):
            valid = signed_by(mallory.key, mallory.kid, seq=100 + i)
            forged = valid[:-1] + bytes([valid[-1] ^ 1 << (i % 8)])
            s.send(mallory, forged)
        s.wait_produced()
        r = s.finish({"bad_signature": 5})
        assert r.worst_ack_latency_s < MAX_HONEST_ACK_S


def test_replays_are_rejected_and_repeats_only_reacked(tmp_path) -> None:
    with scenario("attack: replayed", tmp_path) as s:
        s.honest(HONEST, bundles=BUNDLES)
        mallory = s.attacker()
        s.start()
        first = signed_by(mallory.key, mallory.kid, seq=0)
        s.send_and_wait_ack(mallory, first)
        later = signed_by(mallory.key, mallory.kid, seq=10, prev=pbundle.link_of(first))
        s.send_and_wait_ack(mallory, later)
        s.ledger.record_bundle(first, mallory.key.public_key())
        s.ledger.record_bundle(later, mallory.key.public_key())
        # The counter went back (seq 5 is below the stored 10, links nothing stored): `replayed`.
        s.send(mallory, signed_by(mallory.key, mallory.kid, seq=5, prev=os.urandom(16)))
        for _ in range(3):  # the same bytes again: re-acked, never stored twice
            s.send_and_wait_ack(mallory, first)
        s.wait_produced()
        r = s.finish({"replayed": 1})
        assert s.gateway_metric("duplicates_total") == 3
        assert r.worst_ack_latency_s < MAX_HONEST_ACK_S


def test_resigned_bundles_never_count_for_the_device_they_name(tmp_path) -> None:
    with scenario("attack: re-signed", tmp_path) as s:
        alice = s.honest(HONEST, bundles=BUNDLES)[0]
        mallory = s.attacker()
        s.start()
        # Alice's kid, mallory's signature, on mallory's own topic: addressed to someone else.
        s.send(mallory, signed_by(mallory.key, alice.device.kid, seq=10_000))
        # The same injected on alice's topic by someone holding her MQTT password but not her key.
        thief = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"thief-{alice.device.kid_hex}")
        thief.username_pw_set(alice.device.kid_hex, alice.password)
        thief.connect("127.0.0.1", s.stack.mqtt_port)
        thief.loop_start()
        try:
            info = thief.publish(
                f"pinseal/v1/{alice.device.kid_hex}/up",
                signed_by(mallory.key, alice.device.kid, seq=10_001),
                qos=1,
            )
            info.wait_for_publish(10)
        finally:
            thief.loop_stop()
            thief.disconnect()
        # Alice's readings re-signed by mallory as its own: stored, but as mallory's, never alice's.
        own = signed_by(mallory.key, mallory.kid, seq=0, n=2)
        s.send_and_wait_ack(mallory, own)
        s.ledger.record_bundle(own, mallory.key.public_key())
        s.wait_produced()
        r = s.finish({"wrong_topic": 1, "bad_signature": 1})
        assert r.worst_ack_latency_s < MAX_HONEST_ACK_S


def test_a_revoked_device_is_refused_and_keeps_its_bundles(tmp_path) -> None:
    with scenario("attack: revoked device", tmp_path) as s:
        s.honest(HONEST, bundles=BUNDLES)
        revoked = s.attacker("to-be-revoked")
        s.start()
        for _ in range(4):
            raw = revoked.seal_next()
            s.send_and_wait_ack(revoked, raw)
            s.ledger.record_bundle(raw, revoked.key.public_key())
        assert not revoked.unacked
        s.stack.gateway_cli("devices", "revoke", revoked.kid_hex)
        time.sleep(1.5)  # the gateway reloads a changed registry within REGISTRY_REFRESH_S (1 s)
        for _ in range(3):
            s.send(revoked, revoked.seal_next())
        s.wait_produced()
        r = s.finish({"revoked": 3})
        assert len(revoked.unacked) == 3  # never acked: the device keeps them, as the firmware does
        assert r.worst_ack_latency_s < MAX_HONEST_ACK_S


def test_wrong_topics_are_refused_by_the_broker_or_rejected(tmp_path) -> None:
    with scenario("attack: wrong topic", tmp_path) as s:
        bob = s.honest(HONEST, bundles=BUNDLES)[1]
        mallory = s.attacker()
        s.start()
        bobs = pbundle.seal(
            bob.key,
            boot=1,
            seq=1_000_000,
            prev=pbundle.ZERO_PREV,
            status=pbundle.Status(3900, -60, 10, 0, 0),
            time_source=1,
            readings=[thp_reading(0, int(time.time()))],
        )
        # The broker's ACL: mallory may write only its own up topic. These never reach the gateway
        # (were one to, bob's bundle would be stored as bob's and the accounting's `unexpected` says so).
        s.send(mallory, bobs, topic=f"pinseal/v1/{bob.device.kid_hex}/up")
        s.send(mallory, bobs, topic=f"pinseal/v1/{mallory.kid_hex}/up/x")
        s.send(mallory, b"forged ack", topic=f"pinseal/v1/{bob.device.kid_hex}/ack")
        # Bob's valid bundle on mallory's own topic reaches the gateway, which rejects it.
        s.send(mallory, bobs)
        s.wait_produced()
        r = s.finish({"wrong_topic": 1})
        r.notes["acl_refused"] = 3
        assert r.worst_ack_latency_s < MAX_HONEST_ACK_S


def test_oversize_messages_are_rejected_or_dropped_by_the_broker(tmp_path) -> None:
    with scenario("attack: oversize", tmp_path) as s:
        s.honest(HONEST, bundles=BUNDLES)
        mallory = s.attacker()
        s.start()
        s.send(mallory, os.urandom(2049))
        s.send(mallory, signed_by(mallory.key, mallory.kid, seq=0, n=40))  # validly signed, 40 readings
        s.send(mallory, os.urandom(60 * 1024))
        assert len(signed_by(mallory.key, mallory.kid, seq=0, n=40)) > pbundle.MAX_SIZE
        s.wait_rejections(3)
        # Over the broker's packet limit: dropped (or the client disconnected) before the gateway.
        info = mallory.client.publish(f"pinseal/v1/{mallory.kid_hex}/up", os.urandom(200 * 1024), qos=1)
        with contextlib.suppress(RuntimeError, ValueError):  # a disconnect is a refusal too
            info.wait_for_publish(5)
        s.wait_produced()
        r = s.finish({"too_large": 3})
        r.notes["broker_dropped"] = 1
        assert r.worst_ack_latency_s < MAX_HONEST_ACK_S
