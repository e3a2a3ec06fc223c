"""Home Assistant MQTT discovery against the real Mosquitto, seen as Home Assistant sees it.

Home Assistant is played by a paho client logged in as the `homeassistant` user `broker-config`
creates, subscribed to `homeassistant/#` and the state topics, as its MQTT integration subscribes.
Every discovery config is checked against the table of Home Assistant's keys in
gateway/tests/data/ha_discovery_keys.json (source and date in the file).
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from pinseal_gateway import broker
from pinseal_gateway.cli import homeassistant_users
from pinseal_gateway.config import ConfigError, from_mapping
from pinseal_gateway.homeassistant.discovery import SENSOR_KINDS, DeviceState, ha_value
from pinseal_gateway.keys import read_secret
from pinseal_gateway.store import devices as device_store
from pinseal_protocol import bundle as pbundle

KEYS = json.loads((Path(__file__).parent / "data" / "ha_discovery_keys.json").read_text(encoding="utf-8"))
HA = {"enabled": True, "publish_every_s": 0.1}
FAST_SILENCE = {"expected_interval_s": 1, "silent_after_intervals": 2}


class HomeAssistant:
    """A paho client subscribed as Home Assistant's MQTT integration is: (topic, payload, retained)."""

    def __init__(self, port: int, username: str, password: str, topics: list[str]) -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.history: list[tuple[str, bytes]] = []  # everything received, in order
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username)
        self.client.username_pw_set(username, password)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = self._on_subscribe
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscription not confirmed"

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.history.append((message.topic, message.payload))
        self.messages.put((message.topic, message.payload, bool(message.retain)))

    def _on_subscribe(self, client: object, userdata: object, mid: int, codes: list, props: object) -> None:
        self._subscribed.set()

    def collect(self, until, timeout: float = 10.0) -> dict[str, tuple[bytes, bool]]:
        """Messages (latest per topic) until `until(seen)` holds; TimeoutError naming what came."""
        seen: dict[str, tuple[bytes, bool]] = {}
        deadline = time.monotonic() + timeout
        while not until(seen):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met; got {sorted(seen)}")
            try:
                topic, payload, retained = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            seen[topic] = (payload, retained)
        return seen

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_ha_env(tmp_path, make_env, **devices):
    """A gateway environment with discovery on and the broker files `broker-config` would write."""
    env = make_env(tmp_path, 2, homeassistant=HA, devices=devices or {})
    broker.add_users(env.broker_dir, homeassistant_users(env.config))
    env.broker_proc = broker.start_mosquitto(env.broker_dir, env.port)
    return env


@pytest.fixture
def ha_env(tmp_path, make_gateway_env):
    make_env = make_gateway_env  # the shared builder (the `env` fixture has no [homeassistant])

    env = start_ha_env(tmp_path, make_env, **FAST_SILENCE)
    try:
        yield env
    finally:
        broker.stop_mosquitto(env.broker_proc)


def ha_client(env, topics=("homeassistant/#", "pinseal/ha/#")) -> HomeAssistant:
    password = read_secret(env.config.ha_user_password_path).decode().strip()
    return HomeAssistant(env.port, "homeassistant", password, list(topics))


def config_topics(env) -> set[str]:
    return {
        f"homeassistant/sensor/pinseal_{d.kid_hex}/{kind.key}/config"
        for d in env.devices
        for kind in SENSOR_KINDS.values()
    }


def check_against_table(config: dict) -> None:
    """Every key is one of Home Assistant's (the table), every required one is there, values allowed."""
    keys = KEYS["keys"]
    assert set(config) <= set(keys), f"keys Home Assistant does not know: {set(config) - set(keys)}"
    for key, spec in keys.items():
        if spec["required"]:
            assert key in config, f"required key {key} missing"
    types = {"string": str, "integer": int, "list": list, "map": dict}
    for key, value in config.items():
        spec = keys[key]
        assert isinstance(value, types[spec["type"]]), f"{key}: {value!r} is not a {spec['type']}"
        if "allowed" in spec:
            assert value in spec["allowed"], f"{key}: {value!r} not in {spec['allowed']}"
        if spec["type"] == "list":
            for item in value:
                assert set(item) <= set(spec["item_keys"]), item
        if spec["type"] == "map":
            assert set(value) <= set(spec["item_keys"]), value
            assert set(spec.get("item_required", [])) <= set(value), value
    units = KEYS["units_by_device_class"]
    assert config["unit_of_measurement"] in units[config["device_class"]]
    assert "value_json." in config["value_template"]


def test_retained_configs_match_home_assistants_keys(ha_env, start_gateway):
    gateway = start_gateway(ha_env.config)
    try:
        wanted = config_topics(ha_env)
        ha = ha_client(ha_env)
        try:
            ha.collect(lambda s: wanted <= s.keys())  # the gateway has published them
        finally:
            ha.close()
        ha = ha_client(ha_env)  # a Home Assistant that starts now gets them from the broker: retained
        try:
            seen = ha.collect(lambda s: wanted | {"pinseal/ha/gateway/availability"} <= s.keys())
        finally:
            ha.close()
    finally:
        gateway.stop()
    for topic in wanted:
        payload, retained = seen[topic]
        assert retained, f"{topic} not retained"
        config = json.loads(payload)
        check_against_table(config)
        kid_hex = topic.split("/")[2].removeprefix("pinseal_")
        assert config["state_topic"] == f"pinseal/ha/{kid_hex}/state"
        assert config["device"]["identifiers"] == [f"pinseal_{kid_hex}"]
        assert [a["topic"] for a in config["availability"]] == [
            "pinseal/ha/gateway/availability",
            f"pinseal/ha/{kid_hex}/availability",
        ]
    temperature = json.loads(seen[next(t for t in wanted if t.endswith("/temperature/config"))][0])
    assert (temperature["device_class"], temperature["unit_of_measurement"]) == ("temperature", "°C")
    assert temperature["state_class"] == "measurement"
    pressure = json.loads(seen[next(t for t in wanted if t.endswith("/pressure/config"))][0])
    assert (pressure["device_class"], pressure["unit_of_measurement"]) == ("pressure", "hPa")
    assert seen["pinseal/ha/gateway/availability"][0] == b"online"


def test_state_carries_verified_readings_only(ha_env, start_gateway):
    gateway = start_gateway(ha_env.config)
    device = ha_env.devices[0]
    state_topic = f"pinseal/ha/{device.kid_hex}/state"
    ha = ha_client(ha_env, ("pinseal/ha/+/state",))
    peer = ha_env.device_peer(device)
    su = ha_env.superuser()
    try:
        good = device.seal(n=1)
        peer.send(good)
        peer.acks_for({pbundle.bundle_hash(good)})
        first = json.loads(ha.collect(lambda s: state_topic in s)[state_topic][0])
        assert first["temperature"] == pytest.approx(21.5 + (first["seq"] % 100) / 100)
        assert first["pressure"] == pytest.approx(1013.25)
        # A bundle 50 °C hotter whose signature is broken, sent where the device sends: never shown.
        forged = device.seal(n=1, value=5000, advance=False)
        su.publish(device.up_topic, forged[:-1] + bytes([forged[-1] ^ 1]))
        assert first["time"].endswith("Z")  # time source 1: the reading's Unix time, UTC
        # Acked only once everything before it is committed (FIFO); its time is seconds since boot.
        sentinel = device.seal(n=1, time_source=0)
        peer.send(sentinel)
        peer.acks_for({pbundle.bundle_hash(sentinel)})
        states = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                _, payload, _ = ha.messages.get(timeout=0.5)
            except queue.Empty:
                continue
            states.append(json.loads(payload))
            if states[-1]["seq"] == first["seq"] + 1:
                break
        assert states and states[-1]["seq"] == first["seq"] + 1, states
        assert all(s["temperature"] < 60 for s in states), states
        assert states[-1]["time"] is None  # not a wall-clock time: not shown as one
    finally:
        su.close()
        peer.close()
        ha.close()
        gateway.stop()


def test_birth_message_publishes_everything_again(ha_env, start_gateway):
    gateway = start_gateway(ha_env.config)
    ha = ha_client(ha_env)
    try:
        wanted = config_topics(ha_env)
        ha.collect(lambda s: wanted <= s.keys())
        ha.publish("homeassistant/status", b"online")
        # Sent again live (retain flag clear on a live delivery), not merely replayed by the broker.
        again = ha.collect(lambda s: all(t in s and not s[t][1] for t in wanted))
        for topic in wanted:
            check_against_table(json.loads(again[topic][0]))
    finally:
        ha.close()
        gateway.stop()


def test_availability_follows_online_and_silent(ha_env, start_gateway):
    gateway = start_gateway(ha_env.config)
    device = ha_env.devices[0]
    topic = f"pinseal/ha/{device.kid_hex}/availability"
    ha = ha_client(ha_env, ("pinseal/ha/+/availability",))
    peer = ha_env.device_peer(device)
    try:
        raw = device.seal(n=1)
        peer.send(raw)
        peer.acks_for({pbundle.bundle_hash(raw)})
        ha.collect(lambda s: s.get(topic, (b"",))[0] == b"online")
        # expected every 1 s, silent after 2 intervals: offline about 2 s after the last bundle
        ha.collect(lambda s: s.get(topic, (b"",))[0] == b"offline", timeout=8)
        raw = device.seal(n=1)
        peer.send(raw)
        peer.acks_for({pbundle.bundle_hash(raw)})
        ha.collect(lambda s: s.get(topic, (b"",))[0] == b"online")
    finally:
        peer.close()
        ha.close()
        gateway.stop()
    ha = ha_client(ha_env, ("pinseal/ha/gateway/availability",))
    try:  # a stopped gateway says so (retained), so every entity becomes unavailable
        seen = ha.collect(lambda s: "pinseal/ha/gateway/availability" in s)
        assert seen["pinseal/ha/gateway/availability"][0] == b"offline"
    finally:
        ha.close()


def test_broker_acl_devices_cannot_speak_for_home_assistant(ha_env, start_gateway):
    gateway = start_gateway(ha_env.config)
    device = ha_env.devices[0]
    ha = ha_client(ha_env)
    snoop = None
    try:
        ha.collect(lambda s: config_topics(ha_env) <= s.keys())
        peer = ha_env.device_peer(device)
        try:
            fake = b'{"temperature": 99}'
            peer.publish(f"pinseal/ha/{device.kid_hex}/state", fake)
            peer.publish(f"homeassistant/sensor/pinseal_{device.kid_hex}/temperature/config", b"{}")
            peer.publish("homeassistant/status", b"online")
        finally:
            peer.close()
        # The home assistant login itself may not publish state, nor read the devices' traffic.
        ha.publish(f"pinseal/ha/{device.kid_hex}/state", fake)
        ha.publish(f"pinseal/ha/{device.kid_hex}/availability", b"offline")
        # Mosquitto's device patterns cover every login: this one reaches the gateway, which refuses it.
        ha.publish("pinseal/v1/homeassistant/up", b"not a bundle")
        time.sleep(0.5)  # anything forbidden that the broker let through has arrived by now
        ha.close()  # one login, one connection (use_username_as_clientid): Home Assistant again, below
        # Mosquitto grants these subscriptions and then delivers nothing the ACL does not allow.
        snoop = ha_client(ha_env, ("pinseal/v1/+/up", "pinseal/v1/+/ack", "pinseal/ha/+/state"))
        raw = device.seal(n=1)
        peer = ha_env.device_peer(device)
        try:
            peer.send(raw)
            peer.acks_for({pbundle.bundle_hash(raw)})
        finally:
            peer.close()
        state_topic = f"pinseal/ha/{device.kid_hex}/state"
        snoop.collect(lambda s: state_topic in s)
        time.sleep(0.5)
    finally:
        if snoop is not None:
            snoop.close()
        ha.close()
        gateway.stop()
    assert snoop is not None
    assert {t for t, _ in snoop.history} == {state_topic}, "the homeassistant login read device traffic"
    for topic, payload in ha.history:
        assert payload not in (fake, b"{}"), f"a forbidden publish reached {topic}"
    availability = f"pinseal/ha/{device.kid_hex}/availability"
    assert (availability, b"offline") not in ha.history, "Home Assistant's login published availability"
    assert all(json.loads(p)["temperature"] < 60 for _, p in snoop.history)
    db = ha_env.db()
    try:
        refused = db.run_sync(
            lambda c: c.execute(
                "SELECT reason FROM rejections WHERE topic = 'pinseal/v1/homeassistant/up'"
            ).fetchall()
        )
    finally:
        db.close()
    assert refused == [("wrong_topic",)], refused


@pytest.mark.parametrize("fault", ["broker down", "CA file missing"])
def test_home_assistant_trouble_never_stops_ingest(tmp_path, start_gateway, make_gateway_env, fault):
    make_env = make_gateway_env

    closed_port = broker.free_port()  # nobody listens: the external broker is down
    ha = {"enabled": True, "broker": "external", "port": closed_port, "publish_every_s": 0.1}
    if fault == "CA file missing":
        ha |= {"tls": True, "ca_file": str(tmp_path / "no-such-ca.pem")}
    env = make_env(tmp_path, 1, homeassistant=ha)
    env.broker_proc = broker.start_mosquitto(env.broker_dir, env.port)
    try:
        gateway = start_gateway(env.config)
        peer = env.device_peer(env.devices[0])
        try:
            raws = [env.devices[0].seal(n=1) for _ in range(3)]
            for raw in raws:
                peer.send(raw)
            peer.acks_for({pbundle.bundle_hash(r) for r in raws})
        finally:
            peer.close()
            gateway.stop()
        assert gateway.error is None
    finally:
        broker.stop_mosquitto(env.broker_proc)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"broker": "mine"}, "homeassistant.broker"),
        ({"discovery_prefix": "home/#"}, "homeassistant.discovery_prefix"),
        ({"state_prefix": "pinseal/ha/"}, "homeassistant.state_prefix"),
        ({"port": 0}, "homeassistant.port"),
        ({"ha_username": "a:b"}, "homeassistant.ha_username"),
        ({"enabled": "yes"}, "homeassistant.enabled"),
    ],
)
def test_bad_homeassistant_config_names_the_key(section, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping({"homeassistant": section})


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from([*SENSOR_KINDS, "x", ""]),
    unit=st.one_of(st.none(), st.sampled_from(["Cel", "%RH", "Pa", "V", "K"]), st.text(max_size=5)),
    value=st.one_of(
        st.none(),
        st.text(max_size=30),
        st.builds(lambda m, e: f"{m}e{e}", st.integers(-(2**64), 2**64), st.integers(-(2**64), 2**64)),
    ),
)
def test_any_stored_value_gives_valid_json_or_unknown(name, unit, value):
    """Whatever a device managed to get stored, the state stays JSON Home Assistant can parse."""
    state = DeviceState()
    state.apply(1, 1_700_000_000, name, unit, value)
    body = json.loads(state.payload())
    for key, number in body.items():
        if key not in ("seq", "time"):
            assert number is None or isinstance(number, float)


def test_values_in_home_assistants_units():
    assert ha_value(SENSOR_KINDS["t"], "Cel", "2150e-2") == 21.5
    assert ha_value(SENSOR_KINDS["p"], "Pa", "101325") == 1013.25
    assert ha_value(SENSOR_KINDS["bat"], "V", "3912e-3") == 3.912
    assert ha_value(SENSOR_KINDS["h"], "%RH", "4512e-2") == 45.12
    assert ha_value(SENSOR_KINDS["t"], "K", "29415e-2") is None  # not the table's unit: unknown
    assert ha_value(SENSOR_KINDS["t"], "Cel", None) is None  # a failed sensor (SenML vs): unknown


def test_older_records_never_roll_the_state_back():
    state = DeviceState()
    assert state.apply(10, 100, "t", "Cel", "2000e-2")
    assert not state.apply(5, 95, "t", "Cel", "9000e-2")  # a resent bundle filling a gap
    assert json.loads(state.payload())["temperature"] == 20.0


def test_revoked_device_goes_offline(tmp_path, start_gateway, make_gateway_env):
    make_env = make_gateway_env

    env = start_ha_env(tmp_path, make_env)  # default silence (60 s): only the revocation can flip it
    try:
        gateway = start_gateway(env.config)
        revoked = env.devices[1]
        topic = f"pinseal/ha/{revoked.kid_hex}/availability"
        ha = ha_client(env, ("pinseal/ha/+/availability",))
        try:
            ha.collect(lambda s: s.get(topic, (b"",))[0] == b"online")
            db = env.db()
            try:
                db.run_sync(device_store.revoke_device, revoked.kid)
            finally:
                db.close()
            seen = ha.collect(lambda s: s.get(topic, (b"",))[0] == b"offline")
            assert seen.get(f"pinseal/ha/{env.devices[0].kid_hex}/availability", (b"online",))[0] == b"online"
        finally:
            ha.close()
            gateway.stop()
    finally:
        broker.stop_mosquitto(env.broker_proc)


def test_restarted_gateway_republishes_the_last_verified_state(ha_env, start_gateway):
    device = ha_env.devices[0]
    state_topic = f"pinseal/ha/{device.kid_hex}/state"
    gateway = start_gateway(ha_env.config)
    peer = ha_env.device_peer(device)
    try:
        raw = device.seal(n=2)
        peer.send(raw)
        peer.acks_for({pbundle.bundle_hash(raw)})
    finally:
        peer.close()
        gateway.stop()
    gateway = start_gateway(ha_env.config)
    ha = ha_client(ha_env, ("homeassistant/#", "pinseal/ha/+/state"))
    try:
        ha.collect(lambda s: config_topics(ha_env) <= s.keys())
        ha.publish("homeassistant/status", b"online")
        live = ha.collect(lambda s: state_topic in s and not s[state_topic][1])  # sent again, not replayed
    finally:
        ha.close()
        gateway.stop()
    state = json.loads(live[state_topic][0])
    assert state["seq"] == 1 and state["pressure"] == pytest.approx(1013.25)


def test_external_broker_over_tls_with_a_login(tmp_path, start_gateway, make_gateway_env):
    """The broker Home Assistant already uses: TLS (the CA named in ca_file), a username and password."""
    import getpass
    import ssl

    from pinseal_hil.tls_broker import make_pki

    make_env = make_gateway_env

    ext_dir = tmp_path / "external"
    ext_dir.mkdir()
    pki = make_pki(ext_dir / "pki")
    tls_port = broker.free_port()
    users = [
        broker.BrokerUser("pinseal", device_store.mosquitto_password_hash("pinseal-secret")),
        broker.BrokerUser("hass", device_store.mosquitto_password_hash("hass-secret")),
    ]
    (ext_dir / "passwd").write_text(broker.password_file_text(users))
    (ext_dir / "passwd").chmod(0o600)
    (ext_dir / broker.CONF_NAME).write_text(
        "\n".join(
            [
                "per_listener_settings false",
                "allow_anonymous false",
                f"password_file {ext_dir / 'passwd'}",
                f"user {getpass.getuser()}",
                f"listener {tls_port} 127.0.0.1",
                f"cafile {pki.ca_pem}",
                f"certfile {pki.cert_pem}",
                f"keyfile {pki.key_pem}",
                "",
            ]
        )
    )
    ha = {
        "enabled": True,
        "broker": "external",
        "port": tls_port,
        "username": "pinseal",
        "password_file": str(tmp_path / "ha-secret"),
        "tls": True,
        "ca_file": str(pki.ca_pem),
        "publish_every_s": 0.1,
    }
    env = make_env(tmp_path, 1, homeassistant=ha)
    (tmp_path / "ha-secret").write_text("pinseal-secret\n")
    (tmp_path / "ha-secret").chmod(0o600)
    env.broker_proc = broker.start_mosquitto(env.broker_dir, env.port)
    external = broker.start_mosquitto(ext_dir, tls_port)
    try:
        gateway = start_gateway(env.config)
        try:
            hass = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hass")
            hass.username_pw_set("hass", "hass-secret")
            hass.tls_set(ca_certs=str(pki.ca_pem), cert_reqs=ssl.CERT_REQUIRED)
            got: queue.Queue[tuple[str, bool]] = queue.Queue()
            hass.on_message = lambda c, u, m: got.put((m.topic, bool(m.retain)))
            hass.on_connect = lambda c, u, f, rc, p: c.subscribe("homeassistant/#", 1)
            hass.connect("127.0.0.1", tls_port)
            hass.loop_start()
            try:
                wanted = config_topics(env)
                seen: set[str] = set()
                deadline = time.monotonic() + 10
                while not wanted <= seen and time.monotonic() < deadline:
                    with contextlib.suppress(queue.Empty):
                        seen.add(got.get(timeout=0.5)[0])
                assert wanted <= seen, seen
            finally:
                hass.disconnect()
                hass.loop_stop()
        finally:
            gateway.stop()
    finally:
        broker.stop_mosquitto(external)
        broker.stop_mosquitto(env.broker_proc)
