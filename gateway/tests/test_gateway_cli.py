"""The `pinseal-gateway` command line: key, registry, broker files (checked against the real broker)."""

from __future__ import annotations

import json
import stat

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pinseal_gateway import broker
from pinseal_gateway.cli import main
from pinseal_gateway.keys import KeyFileError, load_gateway_key
from pinseal_protocol import keys


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "gateway.toml"
    port = broker.free_port()
    path.write_text(f'[gateway]\ndata_dir = "data"\n[mqtt]\nport = {port}\n')
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_keygen_creates_a_private_key_once(config_file, capsys):
    code, out, _ = run(capsys, "keygen", "--config", str(config_file))
    assert code == 0
    key_path = config_file.parent / "data" / "gateway.key"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = load_gateway_key(key_path)
    public = keys.public_key_bytes(key)
    assert public.hex() in out and keys.key_id_hex(public) in out
    before = key_path.read_bytes()
    code, _, err = run(capsys, "keygen", "--config", str(config_file))
    assert code == 1 and "refusing to overwrite" in err
    assert key_path.read_bytes() == before


def test_a_readable_key_is_refused(tmp_path):
    path = tmp_path / "gateway.key"
    path.write_bytes(bytes(32))
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="group/world"):
        load_gateway_key(path)
    path.chmod(0o600)
    load_gateway_key(path)
    path.write_bytes(bytes(31))
    with pytest.raises(KeyFileError, match="seed"):
        load_gateway_key(path)


def test_pubkey_prints_the_public_half_only(config_file, capsys):
    code, _, err = run(capsys, "pubkey", "--config", str(config_file))
    assert code == 1 and "keygen" in err  # no key yet: the same one-line error as `run`
    run(capsys, "keygen", "--config", str(config_file))
    public = keys.public_key_bytes(load_gateway_key(config_file.parent / "data" / "gateway.key"))
    code, out, _ = run(capsys, "pubkey", "--config", str(config_file))
    assert (code, out) == (0, public.hex() + "\n")
    code, out, _ = run(capsys, "pubkey", "--json", "--config", str(config_file))
    assert code == 0
    assert json.loads(out) == {"kid": keys.key_id_hex(public), "public_key": public.hex()}


def test_run_refuses_to_start_without_a_safe_key(config_file, capsys):
    code, _, err = run(capsys, "run", "--config", str(config_file))
    assert code == 1 and "keygen" in err


def add_device(capsys, config_file, *extra):
    public = keys.public_key_bytes(keys.load_private_key(bytes([len(extra) + 7]) * 32))
    code, out, _ = run(capsys, "devices", "add", public.hex(), "--config", str(config_file), *extra)
    assert code == 0
    fields = dict(line.split(": ", 1) for line in out.splitlines() if line.startswith("mqtt "))
    return public, fields["mqtt username"], fields["mqtt password"]


def test_devices_add_list_revoke_export(config_file, capsys):
    public, username, password = add_device(capsys, config_file, "--label", "balcony", "--interval", "30")
    assert username == keys.key_id_hex(public)
    db_bytes = (config_file.parent / "data" / "gateway.sqlite").read_bytes()
    assert password.encode() not in db_bytes  # only its hash is stored
    code, _, err = run(capsys, "devices", "add", public.hex(), "--config", str(config_file))
    assert code == 1 and "already registered" in err
    code, _, err = run(capsys, "devices", "add", "abcd", "--config", str(config_file))
    assert code == 1
    code, out, _ = run(capsys, "devices", "list", "--config", str(config_file))
    assert out.split() == [username, "active", "interval=30", "balcony"]
    code, out, _ = run(capsys, "devices", "list", "--json", "--config", str(config_file))
    (listed,) = json.loads(out)
    assert listed["kid"] == username and listed["state"] == "active" and listed["expected_interval_s"] == 30
    assert listed["label"] == "balcony" and listed["public_key"] == public.hex()
    code, out, _ = run(capsys, "devices", "revoke", username, "--config", str(config_file))
    assert code == 0
    code, _, err = run(capsys, "devices", "revoke", username, "--config", str(config_file))
    assert code == 1 and "already revoked" in err
    code, _, err = run(capsys, "devices", "revoke", "00" * 16, "--config", str(config_file))
    assert code == 1 and "not registered" in err
    code, out, _ = run(capsys, "devices", "export", "--config", str(config_file))
    (exported,) = json.loads(out)
    assert exported["kid"] == username and exported["public_key"] == public.hex()
    assert exported["label"] == "balcony" and exported["revoked_at"] is not None
    code, out, _ = run(capsys, "status", "--config", str(config_file))
    status = json.loads(out)
    assert status["devices"][0]["revoked"] is True and status["counts"]["bundles"] == 0


def connect(port, username, password):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{username}")
    client.username_pw_set(username, password)
    client.connect("127.0.0.1", port)
    result = {}
    client.on_connect = lambda c, u, f, rc, p: result.setdefault("rc", rc)
    while "rc" not in result:
        client.loop(0.1)
    client.disconnect()
    return not result["rc"].is_failure


def test_broker_config_passwords_work_on_the_real_broker(config_file, tmp_path, capsys):
    _, username, password = add_device(capsys, config_file)
    out_dir = tmp_path / "broker"
    code, _out, _ = run(capsys, "broker-config", "--out", str(out_dir), "--config", str(config_file))
    assert code == 0
    passwd = out_dir / broker.PASSWD_NAME
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    lines = passwd.read_text().splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["pinseal-gateway", username]
    assert all(line.split(":", 1)[1].startswith("$7$101$") for line in lines)
    acl = (out_dir / broker.ACL_NAME).read_text()
    assert "pattern write pinseal/v1/%u/up" in acl and "pattern read pinseal/v1/%u/ack" in acl
    assert "user pinseal-gateway\ntopic read pinseal/v1/+/up\ntopic write pinseal/v1/+/ack" in acl
    gateway_password = (config_file.parent / "data" / "mqtt-password").read_text().strip()
    assert stat.S_IMODE((config_file.parent / "data" / "mqtt-password").stat().st_mode) == 0o600
    port = int(config_file.read_text().split("port = ")[1].split()[0])
    proc = broker.start_mosquitto(out_dir, port)
    try:
        assert connect(port, username, password)
        assert connect(port, "pinseal-gateway", gateway_password)
        assert not connect(port, username, password + "x")
        assert not connect(port, "someone", "else")
    finally:
        broker.stop_mosquitto(proc)


def test_broker_config_for_the_system_service(config_file, tmp_path, capsys):
    out_dir = tmp_path / "etc"
    code, _, _ = run(capsys, "broker-config", "--system", "--out", str(out_dir), "--config", str(config_file))
    assert code == 0
    conf = (out_dir / broker.CONF_NAME).read_text()
    assert (
        "password_file /etc/mosquitto/pinseal.passwd" in conf
        and "acl_file /etc/mosquitto/pinseal.acl" in conf
    )
    assert "allow_anonymous false" in conf and "persistence" not in conf and "\nuser " not in conf
    # Small packets (bundles, acks, PUBACKs) go out at once instead of waiting out Nagle and the
    # peer's delayed ACK (~40 ms per hop, the p50 latency before).
    assert "\nset_tcp_nodelay true\n" in conf


def test_json_logs_are_one_object_a_line_with_the_arguments(capsys):
    import json
    import logging

    from pinseal_gateway import logformat

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logformat.configure("INFO", "json")
    try:
        logging.getLogger("pinseal_gateway.pipeline").warning("rejected %s from %s", "bad_signature", "ab12")
    finally:
        # Not configure("WARNING", "text"): that would leave the root logger on this test's captured
        # stderr, which closes with the test, and every later thread's warning would print
        # "--- Logging error ---" into the run.
        root.handlers[:], root.level = handlers, level
    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = json.loads(line)
    assert entry["level"] == "warning" and entry["message"] == "rejected bad_signature from ab12"
    assert entry["args"] == ["bad_signature", "ab12"]


# Small-order (and non-canonical) Ed25519 encodings: libsodium's blocklist and Wycheproof's
# eddsa_test.json small-order public keys. No signing key has them; some verifiers accept a signature
# under them for any message.
SMALL_ORDER_KEYS = [
    "00" * 32,  # y = 0, order 4
    "01" + "00" * 31,  # the identity, order 1
    "ec" + "ff" * 30 + "7f",  # y = p - 1, order 2
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
]


@pytest.mark.parametrize("public_hex", SMALL_ORDER_KEYS)
def test_devices_add_refuses_small_order_keys(config_file, capsys, public_hex):
    code, _, err = run(capsys, "devices", "add", public_hex, "--config", str(config_file))
    assert code == 1 and "small-order" in err
    code, out, _ = run(capsys, "devices", "list", "--config", str(config_file))
    assert out == ""


def test_devices_add_refuses_control_characters_in_a_label(config_file, capsys):
    public = keys.public_key_bytes(keys.load_private_key(bytes([9]) * 32))
    for label in ("shed\n0123456789abcdef0123456789abcdef  active  interval=-", "a\x1b[2Jb", "x\u202ey"):
        code, _, err = run(
            capsys, "devices", "add", public.hex(), "--label", label, "--config", str(config_file)
        )
        assert code == 1 and "control character" in err
    code, out, _ = run(capsys, "devices", "list", "--config", str(config_file))
    assert out == ""


def test_devices_list_escapes_a_stored_label(config_file, capsys):
    """A label stored before the check (or written by another tool) is shown escaped, on one line."""
    from pinseal_gateway.config import load_config
    from pinseal_gateway.store import devices as device_store
    from pinseal_gateway.store.db import Database

    public = keys.public_key_bytes(keys.load_private_key(bytes([9]) * 32))
    db = Database(load_config(config_file).db_path)
    try:
        db.run_sync(
            lambda conn: device_store.add_device(
                conn, public, label="shed\nforged  active", expected_interval_s=None, password_hash="x"
            )
        )
    finally:
        db.close()
    code, out, _ = run(capsys, "devices", "list", "--config", str(config_file))
    assert code == 0 and out.splitlines() == [
        f"{keys.key_id_hex(public)}  active   interval=-  shed\\nforged  active"
    ]
