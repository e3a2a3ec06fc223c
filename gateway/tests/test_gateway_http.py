"""HTTP API of a running gateway, and configuration loading."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from pinseal_gateway import broker
from pinseal_gateway.batcher import seal_batch
from pinseal_gateway.config import ConfigError, GatewayConfig, from_mapping, load_config
from pinseal_protocol import batch
from pinseal_protocol import bundle as pbundle


def get(gateway, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.http_port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_metrics_status_and_proofs(env, gateway):
    device = env.devices[0]
    peer = env.device_peer(device)
    try:
        raw = device.seal()
        peer.send(raw)
        peer.ack()
    finally:
        peer.close()
    status, body = get(gateway, "/metrics")
    assert status == 200 and b"pinseal_gateway_bundles_accepted_total 1.0" in body
    assert f'pinseal_gateway_device_last_seen{{kid="{device.kid_hex}"}}'.encode() in body
    assert b"pinseal_gateway_mqtt_subscribed 1.0" in body  # what the local stack waits for
    status, body = get(gateway, "/status")
    report = json.loads(body)
    assert status == 200 and report["counts"]["bundles"] == 1 and report["outbox_depth"] == 0
    by_kid = {d["kid"]: d for d in report["devices"]}
    assert by_kid[device.kid_hex]["contiguous_seq"] == 0 and by_kid[device.kid_hex]["silent"] is False
    assert get(gateway, "/proofs/zz")[0] == 400
    assert get(gateway, f"/proofs/{'00' * 32}")[0] == 404
    bundle_hash = pbundle.bundle_hash(raw).hex()
    status, body = get(gateway, f"/proofs/{bundle_hash}")
    assert status == 202 and json.loads(body)["status"] == "pending"  # stored, batch not sealed yet
    ctx = gateway.ctx
    ctx.db.run_sync(seal_batch, ctx.gateway_key, ctx.gateway_kid, "bundles", 100, time.time())
    status, body = get(gateway, f"/proofs/{bundle_hash}")
    assert status == 200
    header = batch.verify_proof_document(json.loads(body), ctx.gateway_key.public_key(), raw)
    assert header.count == 1 and header.batch_no == 0


def test_config_defaults_and_validation(tmp_path):
    assert load_config(None) == GatewayConfig()
    config = GatewayConfig()
    assert config.mqtt.port == 1883 and config.verify.max_bundle_bytes == 2048 and config.http.port == 9100
    path = tmp_path / "g.toml"
    path.write_text('[gateway]\ndata_dir = "d"\n[batch]\ninterval_s = 5\n')
    loaded = load_config(path)
    assert loaded.data_dir == tmp_path / "d" and loaded.batch.interval_s == 5.0
    for bad in (
        {"nope": {}},
        {"mqtt": {"nope": 1}},
        {"mqtt": {"port": "1883"}},
        {"mqtt": {"port": 0}},
        {"batch": {"mode": "x"}},
        {"http": {"listen": "nowhere"}},
    ):
        with pytest.raises(ConfigError):
            from_mapping(bad)
    path.write_text("[gateway\n")
    with pytest.raises(ConfigError):
        load_config(path)


def test_status_shows_the_broker_connection_and_why_it_is_down(env, gateway):
    """A gateway without its broker receives nothing: /status says so, with the reason, not only silence."""
    report = json.loads(get(gateway, "/status")[1])
    assert report["broker"]["connected"] is True and report["broker"]["port"] == env.port
    assert report["broker"]["since"] is not None
    broker.stop_mosquitto(env.broker_proc)
    deadline = time.monotonic() + 15
    while report["broker"]["connected"] and time.monotonic() < deadline:
        time.sleep(0.1)
        report = json.loads(get(gateway, "/status")[1])
    assert report["broker"]["connected"] is False, report["broker"]
    assert report["broker"]["last_error"], report["broker"]
