# pinseal.transport.mqtt in the MicroPython VM, board mode, net plugin, against a real Mosquitto with the
# gateway's password file and ACL (plain and TLS listeners). Run one function at a time by
# hil_tests/tests/test_mqtt_client.py, which writes /mqttparams/params.json, watches what arrives on the
# broker, and performs host actions when a test prints "HOST <action>" (publish an ack, restart the broker).
import asyncio
import errno
import json
import time

import mptest

try:
    import vboard_control
    import vboard_net
except ImportError:
    vboard_net = None

from pinseal.transport import mqtt


def _params():
    if vboard_net is None:
        raise mptest.SkipTest("needs the net plugin (run_vm.mjs --plugin hil_tests/vboard/net.mjs)")
    try:
        with open("/mqttparams/params.json") as f:
            return json.load(f)
    except OSError:
        raise mptest.SkipTest("no /mqttparams/params.json (hil_tests/tests/test_mqtt_client.py writes it)")


def _control(msg):
    return json.loads(vboard_control.send("net", json.dumps(msg)))


async def _wifi(p):
    import network

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wlan.connect(p["ssid"], p["wifi_password"])
    await _until(wlan.isconnected, 5000, "Wi-Fi")
    return wlan


async def _until(cond, ms, what):
    t0 = time.ticks_ms()
    while not cond():
        if time.ticks_diff(time.ticks_ms(), t0) > ms:
            raise AssertionError("timed out waiting for " + what)
        await asyncio.sleep_ms(10)
    return time.ticks_diff(time.ticks_ms(), t0)


def _config(p, **over):
    cfg = {
        "host": "127.0.0.1",
        "port": p["port"],
        "password": p["password"],
        "keepalive_s": 10,
        "backoff_max_s": 1,
        "backoff_base_ms": 50,
        "connect_timeout_ms": 3000,
        "retry_ms": 3000,
    }
    cfg.update(over)
    return cfg


async def _started(p, **over):
    await _wifi(p)
    t = mqtt.MqttTransport(_config(p, **over), p["kid"])
    await t.start()
    await _until(lambda: t.connected, 5000, "connected")
    return t


def _host(action):
    print("HOST", action)


async def _in_task(coro):
    # Firmware runs in tasks; this VM's wait_for cannot cancel the top-level coroutine.
    return await asyncio.create_task(coro)


async def test_connects_with_user_name_and_password_and_publishes_to_its_up_topic():
    p = _params()

    async def run():
        t = await _started(p)
        assert t.sessions == 1 and t.last_error is None
        await t.send(p["payload"].encode())  # returns on the broker's PUBACK
        await t.send(b"")  # an empty message is a message
        await t.stop()
        assert not t.connected

    await _in_task(run())


async def test_wrong_password_is_refused_with_a_clear_error():
    p = _params()

    async def run():
        await _wifi(p)
        t = mqtt.MqttTransport(_config(p, password="not-the-password"), p["kid"])
        try:
            await t.connect_once()
            raise AssertionError("connected with a wrong password")
        except mqtt.Refused as e:
            assert e.code in (4, 5), e  # Mosquitto 2 answers "not authorized" (5) to MQTT 3.1.1
            assert "MQTT refused" in str(e), e
            print("refusal:", e)
        await t.start()
        await _until(lambda: t.failures >= 3, 5000, "retries")  # it keeps trying, with backoff
        assert not t.connected and isinstance(t.last_error, mqtt.Refused), t.last_error
        await t.stop()

    await _in_task(run())


async def test_publishing_to_another_devices_topic_never_arrives():
    p = _params()

    async def run():
        t = await _started(p)
        # Mosquitto 2 acknowledges a publish its ACL denies and drops it: send() returns all the same.
        await t.send(b"forged", "pinseal/v1/%s/up" % p["other_kid"])
        await t.send(b"after-forged")
        await t.stop()

    await _in_task(run())


async def test_another_devices_acks_never_reach_this_device():
    p = _params()

    async def run():
        await _wifi(p)
        other = b"pinseal/v1/" + p["other_kid"].encode() + b"/ack"
        kid = p["kid"]
        c = mqtt.MQTTClient("127.0.0.1", kid, other, port=p["port"], username=kid, password=p["password"])
        got = []
        c.on_ack = got.append
        await c.start()
        await _until(lambda: c.connected, 5000, "connected")
        # Mosquitto 2 grants the SUBSCRIBE (a SUBACK 0x80 would end the session as mqtt.Refused) and
        # applies its read ACL to each message: the other device's ack is never delivered here.
        _host("publish_other_ack")
        await asyncio.sleep_ms(1500)
        assert got == [] and c.dropped == 0, got
        await c.stop()

    await _in_task(run())


async def test_receives_qos1_acks_on_its_ack_topic_duplicates_included():
    p = _params()

    async def run():
        t = await _started(p)
        got = []
        t.on_ack = got.append
        _host("publish_ack")  # the host publishes the ack twice, QoS 1
        await _until(lambda: len(got) >= 2, 5000, "acks")
        want = bytes.fromhex(p["ack_hex"])
        assert got == [want, want], got
        assert type(got[0]) is bytes
        assert t.connected and t.sessions == 1
        await t.stop()

    await _in_task(run())


async def test_a_message_longer_than_the_resident_buffer_arrives_whole():
    p = _params()

    async def run():
        t = await _started(p)
        got = []
        t.on_ack = got.append
        _host("publish_long")  # 1,507 bytes (over the 256 kept for reading, within 2,176), then an ack
        await _until(lambda: len(got) >= 2, 5000, "the long message and the ack")
        assert got == [bytes.fromhex(p["long_ack_hex"]), bytes.fromhex(p["ack_hex"])], [len(g) for g in got]
        assert t.dropped == 0 and t.sessions == 1 and t.failures == 0, (t.dropped, t.failures)
        await t.stop()

    await _in_task(run())


async def test_oversized_messages_are_dropped_and_acknowledged_and_the_link_stays():
    p = _params()

    async def run():
        t = await _started(p, rx_buffer_bytes=512)
        got = []
        t.on_ack = got.append
        _host("publish_big")  # 5,000 bytes (over the buffer), then a normal ack
        await _until(lambda: len(got) >= 1, 5000, "the ack after the big message")
        assert got == [bytes.fromhex(p["ack_hex"])], got
        assert t.dropped == 1 and t.sessions == 1 and t.failures == 0, (t.dropped, t.failures)
        await t.stop()

    await _in_task(run())


async def test_keepalive_holds_a_quiet_link_and_detects_a_dead_one():
    p = _params()

    async def run():
        t = await _started(p, keepalive_s=1)
        # The broker drops a client silent for 1.5 x keepalive: PINGREQs every 500 ms keep it.
        await asyncio.sleep_ms(4000)
        assert t.connected and t.sessions == 1 and t.failures == 0, (t.sessions, t.failures, t.last_error)
        _control({"block_host": "127.0.0.1", "connect_timeout_ms": 300})  # packets vanish, no RST
        took = await _until(lambda: not t.connected, 3000, "the dead link to be noticed")
        assert took <= 1500, took  # one unanswered PINGREQ: at most keepalive after the loss
        e = t.last_error
        assert isinstance(e, OSError) and e.errno == errno.ETIMEDOUT, e
        print("dead link noticed after", took, "ms:", e)
        _control({"block_host": []})
        await _until(lambda: t.connected, 5000, "reconnect")
        assert t.sessions == 2
        await t.stop()

    await _in_task(run())


async def test_broker_restart_retransmits_the_unacknowledged_publish():
    p = _params()

    async def run():
        t = await _started(p, keepalive_s=2, backoff_max_s=2)
        await t.send(b"before-restart")
        # Stall the link so the next PUBLISH is written but never acknowledged, then have the host stop
        # the broker and start it again on the same port.
        _control({"block_host": "127.0.0.1", "connect_timeout_ms": 300})
        sender = asyncio.create_task(t.send(p["payload"].encode()))
        await asyncio.sleep_ms(300)
        assert not sender.done()
        _host("restart_broker")  # the host answers by stopping Mosquitto, then starting it after 1.5 s
        await asyncio.sleep_ms(200)
        _control({"block_host": []})
        await asyncio.wait_for_ms(sender, 20000)  # PUBACK from the restarted broker
        assert t.retransmits >= 1 and t.sessions >= 2, (t.retransmits, t.sessions)
        print("retransmits", t.retransmits, "sessions", t.sessions, "failures", t.failures, t.last_error)
        await t.stop()

    await _in_task(run())


async def test_net_faults_drop_refuse_and_wifi_down_end_in_a_reconnect():
    p = _params()

    async def run():
        t = await _started(p)
        # drop: the connection is reset
        _control({"drop": True})
        await _until(lambda: not t.connected, 2000, "drop noticed")
        assert t.last_error.errno == errno.ECONNRESET, t.last_error
        await _until(lambda: t.connected, 5000, "reconnect after drop")
        # refuse: new connections refused while the link is reset
        _control({"refuse": True})
        _control({"drop": True})
        await _until(lambda: t.failures >= 3, 5000, "refused attempts")
        assert t.last_error.errno == errno.ECONNREFUSED, t.last_error
        sender = asyncio.create_task(t.send(b"after-refuse"))
        _control({"refuse": False})
        await asyncio.wait_for_ms(sender, 5000)
        # Wi-Fi down: open connections abort, new ones have no route; the station re-associates itself.
        _control({"wifi": "down"})
        await _until(lambda: not t.connected, 2000, "Wi-Fi loss noticed")
        await _until(lambda: t.last_error.errno == errno.EHOSTUNREACH, 5000, "no route")
        sender = asyncio.create_task(t.send(p["payload"].encode()))
        await asyncio.sleep_ms(300)
        assert not sender.done()
        _control({"wifi": "up"})
        await asyncio.wait_for_ms(sender, 10000)
        assert t.sessions == 4, t.sessions
        await t.stop()

    await _in_task(run())


async def test_tls_with_ca_verification():
    p = _params()

    async def run():
        t = await _started(p, port=p["tls_port"], tls=True, ca=p["ca_pem"], server_hostname="localhost")
        await t.send(p["payload"].encode())
        await t.stop()

    await _in_task(run())


async def test_tls_with_the_wrong_ca_is_refused():
    p = _params()

    async def run():
        await _wifi(p)
        t = mqtt.MqttTransport(_config(p, port=p["tls_port"], tls=True, ca=p["wrong_ca_pem"]), p["kid"])
        try:
            await t.connect_once()
            raise AssertionError("a broker certificate from another CA was accepted")
        except ValueError as e:
            assert "not correctly signed" in str(e), e
        await t.start()
        await _until(lambda: t.failures >= 2, 5000, "retries")
        assert not t.connected and "not correctly signed" in str(t.last_error), t.last_error
        await t.stop()
        try:
            mqtt.MqttTransport(_config(p, tls=True), p["kid"])
            raise AssertionError("TLS without a CA configured")
        except ValueError:
            pass

    await _in_task(run())


async def test_peak_heap_of_a_session():
    p = _params()
    import gc

    import vboard_ram

    await _wifi(p)
    gc.collect()
    await asyncio.sleep_ms(0)
    base = vboard_ram.reset_peak()

    async def run():
        t = mqtt.MqttTransport(_config(p), p["kid"])
        got = []
        t.on_ack = got.append
        await t.start()
        await _until(lambda: t.connected, 5000, "connected")
        bundle = bytes(2000)  # a bundle at the protocol's size limit
        for _ in range(20):
            await t.send(bundle)
        _host("publish_ack")
        await _until(lambda: len(got) >= 2, 5000, "acks")
        await t.stop()
        return t

    t = await asyncio.create_task(run())
    peak = vboard_ram.peak() - base
    # The 2,000-byte bundle (and its bytes) is the test's, not the client's.
    print("HEAP peak_session_bytes %d (of which the test's bundle ~2,000) ram %d" % (peak, vboard_ram.ram()))
    assert t.sessions == 1
    assert peak < 16000, peak
