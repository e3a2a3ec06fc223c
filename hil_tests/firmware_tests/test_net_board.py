# The virtual board's network (hil_tests/vboard/net.mjs + mpy shims), seen from MicroPython as firmware
# sees it: network.WLAN, asyncio.open_connection (plain and TLS) to a real Mosquitto, faults, ntptime.
# Run in board mode with the net plugin by hil_tests/tests/test_vboard_net.py, one pytest test a function;
# the broker's ports and the CAs come from /netparams/params.json. Skipped in a VM without the plugin.
# MQTT 3.1.1 packets are written by hand here: the firmware's MQTT client is not what is tested.
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


def _params():
    if vboard_net is None:
        raise mptest.SkipTest("needs the net plugin (run_vm.mjs --plugin hil_tests/vboard/net.mjs)")
    with open("/netparams/params.json") as f:
        return json.load(f)


def _read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _control(msg):
    return json.loads(vboard_control.send("net", json.dumps(msg)))


async def _wifi(p):
    import network

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wlan.connect(p["ssid"], p["password"])
    for _ in range(500):
        if wlan.isconnected():
            return wlan
        await asyncio.sleep_ms(10)
    raise AssertionError("Wi-Fi did not connect: status %d" % wlan.status())


def _utf8(s):
    b = s.encode()
    return bytes((len(b) >> 8, len(b) & 0xFF)) + b


def _connect_packet(client_id):
    var = _utf8("MQTT") + b"\x04\x02\x00\x1e"  # protocol level 4, clean session, keepalive 30 s
    body = var + _utf8(client_id)
    return bytes((0x10, len(body))) + body


def _remaining_length(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _publish_packet(topic, payload):
    body = _utf8(topic) + payload
    return b"\x30" + _remaining_length(len(body)) + body


CONNACK_OK = b"\x20\x02\x00\x00"


async def _mqtt_session(reader, writer, client_id):
    writer.write(_connect_packet(client_id))
    await writer.drain()
    ack = await reader.readexactly(4)
    assert ack == CONNACK_OK, ack


async def _expect_oserror(coro, code):
    try:
        await coro
    except OSError as e:
        assert e.errno == code, (e, code)
        return e
    raise AssertionError("no OSError %d" % code)


def _ssl_ctx(cadata=None):
    import tls

    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED
    if cadata is not None:
        ctx.load_verify_locations(cadata)
    return ctx


# --- Wi-Fi ---


async def test_wlan_goes_idle_connecting_got_ip_and_back():
    p = _params()
    import network

    wlan = network.WLAN(network.STA_IF)
    assert not wlan.active()
    assert wlan.status() == network.STAT_IDLE
    assert wlan.ifconfig()[0] == "0.0.0.0"
    try:
        wlan.connect(p["ssid"], p["password"])
        raise AssertionError("connect before active() must fail")
    except OSError:
        pass
    wlan.active(True)
    wlan.connect(p["ssid"], p["password"])
    assert wlan.status() == network.STAT_CONNECTING
    assert not wlan.isconnected()
    t0 = time.ticks_ms()
    while wlan.status() == network.STAT_CONNECTING:
        await asyncio.sleep_ms(5)
    took = time.ticks_diff(time.ticks_ms(), t0)
    assert wlan.status() == network.STAT_GOT_IP and wlan.isconnected()
    assert took >= p["connect_ms"] - 20, took  # association takes time, as on a board
    ip, mask, gw, dns = wlan.ifconfig()
    assert ip != "0.0.0.0" and mask == "255.255.255.0", wlan.ifconfig()
    mac = wlan.config("mac")
    assert isinstance(mac, bytes) and len(mac) == 6
    assert wlan.config("essid") == p["ssid"]
    wlan.disconnect()
    assert not wlan.isconnected() and wlan.status() == network.STAT_IDLE
    print("connect took", took, "ms; mac", mac.hex(), "port", vboard_net.port())


async def test_wrong_password_and_missing_ap_as_the_port_reports_them():
    p = _params()
    import network

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    port = vboard_net.port()
    if port == "esp32":
        # ESP32 retries for ever by default: still "connecting" long after one attempt's time.
        wlan.connect(p["ssid"], "not-the-password")
        await asyncio.sleep_ms(3 * p["connect_ms"])
        assert wlan.status() == network.STAT_CONNECTING
        wlan.config(reconnects=2)
        wlan.connect(p["ssid"], "not-the-password")
        await asyncio.sleep_ms(2 * p["connect_ms"] + 50)
        assert wlan.status() == network.STAT_WRONG_PASSWORD == 202, wlan.status()
        wlan.connect("no-such-ap", "x")
        await asyncio.sleep_ms(2 * p["connect_ms"] + 50)
        assert wlan.status() == network.STAT_NO_AP_FOUND == 201, wlan.status()
    else:
        wlan.connect(p["ssid"], "not-the-password")
        assert wlan.status() == network.STAT_CONNECTING == 1
        await asyncio.sleep_ms(p["connect_ms"] + 50)
        assert wlan.status() == network.STAT_WRONG_PASSWORD == -3, wlan.status()
        wlan.connect("no-such-ap", "x")
        await asyncio.sleep_ms(p["connect_ms"] + 50)
        assert wlan.status() == network.STAT_NO_AP_FOUND == -2, wlan.status()
    assert not wlan.isconnected()
    wlan.connect(p["ssid"], p["password"])
    await asyncio.sleep_ms(p["connect_ms"] + 50)
    assert wlan.isconnected()


async def test_no_connection_without_wifi():
    p = _params()
    import network

    network.WLAN(network.STA_IF).active(True)  # active, never connected
    await _expect_oserror(asyncio.open_connection("127.0.0.1", p["port"]), errno.EHOSTUNREACH)
    try:
        await asyncio.open_connection("localhost", p["port"])  # a name needs DNS
        raise AssertionError("resolved without Wi-Fi")
    except OSError as e:
        assert e.errno in (-202, -2), e


# --- TCP to Mosquitto ---


async def test_mqtt_connect_connack_over_tcp():
    p = _params()
    await _wifi(p)
    reader, writer = await asyncio.open_connection("127.0.0.1", p["port"])
    await _mqtt_session(reader, writer, "vboard-connack")
    writer.write(b"\xc0\x00")  # PINGREQ
    await writer.drain()
    assert await reader.readexactly(2) == b"\xd0\x00"  # PINGRESP
    try:
        writer.get_extra_info("peername")
        raise AssertionError("a board's client stream has no peername")
    except KeyError:
        pass
    writer.close()
    await writer.wait_closed()


async def test_mqtt_publish_qos0_reaches_a_host_subscriber():
    p = _params()
    await _wifi(p)
    reader, writer = await asyncio.open_connection("localhost", p["port"])
    await _mqtt_session(reader, writer, "vboard-pub")
    writer.write(_publish_packet(p["topic"], p["payload"].encode()))
    await writer.drain()
    writer.write(b"\xe0\x00")  # DISCONNECT: the broker then closes the connection
    await writer.drain()
    assert await reader.read(10) == b""  # EOF
    try:
        await reader.readexactly(1)
        raise AssertionError("readexactly past EOF must raise EOFError")
    except EOFError:
        pass
    writer.close()


async def test_round_trip_time_through_the_bridge():
    p = _params()
    await _wifi(p)
    import hostclock

    reader, writer = await asyncio.open_connection("127.0.0.1", p["port"])
    await _mqtt_session(reader, writer, "vboard-rtt")
    n = 50
    t0 = hostclock.now_ms()
    for _ in range(n):
        writer.write(b"\xc0\x00")
        await writer.drain()
        await reader.readexactly(2)
    per = (hostclock.now_ms() - t0) / n
    print("RTT_MS %.3f" % per)
    writer.close()


async def test_a_large_message_is_split_and_reassembled_without_loss():
    p = _params()
    await _wifi(p)
    reader, writer = await asyncio.open_connection("127.0.0.1", p["port"])
    await _mqtt_session(reader, writer, "vboard-big")
    # Subscribe to our own topic, publish 20 KB (more than the bridge's receive buffer), read it back.
    topic = p["topic"] + "/big"
    sub = b"\x00\x01" + _utf8(topic) + b"\x00"
    writer.write(bytes((0x82, len(sub))) + sub)
    await writer.drain()
    assert (await reader.readexactly(5))[:2] == b"\x90\x03"
    payload = bytes(i & 0xFF for i in range(20000))
    packet = _publish_packet(topic, payload)
    writer.write(packet)
    await writer.drain()
    head = await reader.readexactly(4)  # 0x30 + 3 bytes of remaining length (> 16383)
    assert head == packet[:4], head
    got = await reader.readexactly(len(packet) - 4)
    assert got[len(topic) + 2 :] == payload
    writer.close()


async def test_wait_for_timeout_loses_no_data():
    p = _params()
    await _wifi(p)
    reader, writer = await asyncio.open_connection("127.0.0.1", p["port"])
    await _mqtt_session(reader, writer, "vboard-cancel")

    async def firmware_like():
        # In a task, as firmware runs: this VM's asyncio.wait_for cannot cancel the top-level coroutine.
        try:
            await asyncio.wait_for(reader.read(2), 0.1)
            raise AssertionError("nothing was due")
        except asyncio.TimeoutError:
            pass
        writer.write(b"\xc0\x00")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\xd0\x00"

    await asyncio.create_task(firmware_like())
    writer.close()


# --- TLS ---


async def test_tls_round_trip_with_verification():
    p = _params()
    await _wifi(p)
    ctx = _ssl_ctx(_read_bytes("/netparams/ca.der"))
    reader, writer = await asyncio.open_connection("localhost", p["tls_port"], ssl=ctx)
    await _mqtt_session(reader, writer, "vboard-tls")
    writer.write(_publish_packet(p["topic"] + "/tls", p["payload"].encode()))
    writer.write(b"\xe0\x00")
    await writer.drain()
    assert await reader.read(10) == b""
    writer.close()
    # The ssl module (micropython-lib's wrapper) takes keywords and works the same.
    import ssl

    ctx2 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx2.load_verify_locations(cadata=_read_bytes("/netparams/ca.der"))
    assert ctx2.verify_mode == ssl.CERT_REQUIRED
    reader, writer = await asyncio.open_connection("127.0.0.1", p["tls_port"], ssl=ctx2)
    await _mqtt_session(reader, writer, "vboard-tls2")
    writer.close()


async def _expect_verify_failure(stream_pair_coro, text):
    reader, writer = await stream_pair_coro  # as on a board, the handshake's verdict comes with the first I/O
    try:
        writer.write(_connect_packet("vboard-bad"))
        await writer.drain()
        await reader.readexactly(4)
    except ValueError as e:
        assert text in str(e), e
        writer.close()
        return
    raise AssertionError("the certificate was accepted")


async def test_tls_wrong_ca_is_refused():
    p = _params()
    await _wifi(p)
    ctx = _ssl_ctx(_read_bytes("/netparams/wrong_ca.der"))
    await _expect_verify_failure(
        asyncio.open_connection("localhost", p["tls_port"], ssl=ctx), "not correctly signed"
    )


async def test_tls_without_a_ca_trusts_nothing():
    p = _params()
    await _wifi(p)
    await _expect_verify_failure(
        asyncio.open_connection("localhost", p["tls_port"], ssl=True), "not correctly signed"
    )


async def test_tls_hostname_mismatch_is_refused():
    p = _params()
    await _wifi(p)
    ctx = _ssl_ctx(_read_bytes("/netparams/ca.der"))
    pair = asyncio.open_connection("localhost", p["tls_port"], ssl=ctx, server_hostname="broker.example.org")
    await _expect_verify_failure(pair, "Common Name (CN) does not match")


async def test_tls_cert_none_skips_verification():
    p = _params()
    await _wifi(p)
    import tls

    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_NONE
    reader, writer = await asyncio.open_connection("localhost", p["tls_port"], ssl=ctx)
    await _mqtt_session(reader, writer, "vboard-tls-none")
    writer.close()


def test_tls_bad_ca_bytes_and_keywords_fail_at_load_as_on_a_board():
    _params()
    import tls

    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(b"\x30\x03not a certificate")
        raise AssertionError("garbage accepted as a CA")
    except ValueError as e:
        assert str(e) == "invalid cert", e
    try:
        ctx.load_verify_locations(cadata=b"")
        raise AssertionError("tls.SSLContext.load_verify_locations takes no keywords on a board")
    except TypeError:
        pass


# --- faults ---


async def test_refused_connections_raise_econnrefused_then_recover():
    p = _params()
    await _wifi(p)
    _control({"refuse": True})
    reader, writer = await asyncio.open_connection("127.0.0.1", p["port"])
    try:
        writer.write(_connect_packet("vboard-refused"))
        raise AssertionError("write on a refused connection")
    except OSError as e:
        assert e.errno == errno.ECONNREFUSED, e
    await _expect_oserror(reader.read(1), errno.ECONNREFUSED)
    writer.close()
    _control({"refuse": False})
    reader, writer = await asyncio.open_connection("127.0.0.1", p["port"])
    await _mqtt_session(reader, writer, "vboard-after-refuse")
    writer.close()


async def test_drop_resets_the_connection_and_a_reconnect_works():
    p = _params()
    await _wifi(p)
    reader, writer = await asyncio.open_connection("127.0.0.1", p["port"])
    await _mqtt_session(reader, writer, "vboard-drop")
    pending = asyncio.create_task(reader.read(2))  # a reader blocked when the link drops
    await asyncio.sleep_ms(20)
    state = _control({"drop": True})
    assert state["stats"]["dropped"] >= 1, state
    await _expect_oserror(pending, errno.ECONNRESET)
    try:
        writer.write(b"\xc0\x00")
        raise AssertionError("write after a reset")
    except OSError as e:
        assert e.errno == errno.ECONNRESET, e
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", p["port"])
    await _mqtt_session(reader, writer, "vboard-drop")
    writer.close()


async def test_delay_adds_latency_each_way():
    p = _params()
    await _wifi(p)
    import hostclock

    async def connect_and_ping():
        t0 = hostclock.now_ms()
        reader, writer = await asyncio.open_connection("127.0.0.1", p["port"])
        await _mqtt_session(reader, writer, "vboard-delay")
        writer.close()
        return hostclock.now_ms() - t0

    fast = await connect_and_ping()
    _control({"delay_ms": 100})
    slow = await connect_and_ping()
    _control({"delay_ms": 0})
    print("connect+CONNACK ms: no delay %.1f, delay 100 ms each way %.1f" % (fast, slow))
    # TCP handshake (one round trip) + CONNECT/CONNACK (one round trip) = 4 x 100 ms; loosely.
    assert slow - fast >= 300, (fast, slow)


async def test_wifi_down_aborts_connections_and_refuses_new_ones_until_it_is_back():
    p = _params()
    wlan = await _wifi(p)
    import network

    reader, writer = await asyncio.open_connection("127.0.0.1", p["port"])
    await _mqtt_session(reader, writer, "vboard-wifi")
    _control({"wifi": "down"})
    assert not wlan.isconnected()
    assert wlan.status() != network.STAT_GOT_IP
    await _expect_oserror(reader.read(1), errno.ECONNABORTED)
    writer.close()
    await _expect_oserror(asyncio.open_connection("127.0.0.1", p["port"]), errno.EHOSTUNREACH)
    await asyncio.sleep_ms(p["connect_ms"] + 50)
    assert not wlan.isconnected()  # no AP, no association however long it tries
    _control({"wifi": "up"})
    assert not wlan.isconnected()  # re-association takes its time
    for _ in range(500):
        if wlan.isconnected():
            break
        await asyncio.sleep_ms(10)
    assert wlan.isconnected()
    reader, writer = await asyncio.open_connection("127.0.0.1", p["port"])
    await _mqtt_session(reader, writer, "vboard-wifi")
    writer.close()


async def test_blocked_host_times_out_and_hosts_outside_the_allow_list_are_unreachable():
    p = _params()
    await _wifi(p)
    _control({"block_host": "127.0.0.1", "connect_timeout_ms": 200})
    reader, writer = await asyncio.open_connection("127.0.0.1", p["port"])
    await _expect_oserror(reader.read(1), errno.ETIMEDOUT)
    writer.close()
    _control({"block_host": []})
    await _expect_oserror(asyncio.open_connection("192.0.2.7", p["port"]), errno.EHOSTUNREACH)
    try:
        await asyncio.open_connection("broker.example.org", p["port"])
        raise AssertionError("a name outside the allow list resolved")
    except OSError as e:
        assert e.errno in (-202, -2), e


# --- NTP ---


async def test_ntptime_sets_the_board_clock():
    p = _params()
    import ntptime

    try:
        ntptime.settime()  # Wi-Fi not connected: the NTP server's name does not resolve
        raise AssertionError("NTP without Wi-Fi")
    except OSError as e:
        assert e.errno in (-202, -2), e
    await _wifi(p)
    import hostclock  # noqa: F401 - (host time is read through the plugin)

    _control({"ntp": {"offset_s": -86400}})
    before = time.time()
    ntptime.settime()
    after = time.time()
    assert abs((before - after) - 86400) <= 2, (before, after)
    assert abs(ntptime.time() - after) <= 2
    _control({"ntp": {"offset_s": 0, "fail": True}})
    ntptime.timeout = 0.2
    t0 = time.ticks_ms()
    try:
        ntptime.settime()
        raise AssertionError("NTP answered while failing")
    except OSError as e:
        assert e.errno == errno.ETIMEDOUT, e
    assert time.ticks_diff(time.ticks_ms(), t0) >= 150  # the board waited for the answer
    assert abs(time.time() - after) <= 2  # the clock was left alone
    _control({"ntp": {"fail": False}})
    ntptime.settime()
    assert abs(time.time() - (after + 86400)) <= 2
