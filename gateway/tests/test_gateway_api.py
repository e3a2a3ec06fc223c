"""The read-only API (/api/devices, readings as JSON and CSV, bundles with proof links, batches,
rejections), its 400s, the dashboard's pages and files, and the password beyond loopback: against a
running gateway, with bundles sent over the real broker."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pinseal_gateway.batcher import seal_batch
from pinseal_gateway.config import ConfigError, from_mapping
from pinseal_gateway.context import GatewayContext
from pinseal_gateway.http.api import csv_cell
from pinseal_gateway.http.auth import PasswordFileError
from pinseal_gateway.http.query import MAX_LIMIT, QueryError, parse_kid, parse_readings_query
from pinseal_gateway.http.server import make_app
from pinseal_gateway.units import format_value, human_value, quantity
from pinseal_protocol import bundle as pbundle


def get(port, path, headers=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def get_json(port, path):
    status, body, _ = get(port, path)
    return status, json.loads(body)


def wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def send_acked(env, device, raws):
    peer = env.device_peer(device)
    try:
        for raw in raws:
            peer.send(raw)
        peer.acks_for({pbundle.bundle_hash(r) for r in raws})
    finally:
        peer.close()


def test_devices_readings_bundles_batches_and_rejections(env, gateway):
    device, other = env.devices[0], env.devices[1]
    port = gateway.http_port
    now = int(time.time())
    # two wall-clock bundles (NTP time) of two readings each, then two readings in seconds since boot
    wall = [device.seal(2, time_s=now - 120), device.seal(2, time_s=now - 60)]
    since_boot = device.seal(2, time_s=42, time_source=0)
    send_acked(env, device, [*wall, since_boot])

    listed = wait_for(lambda: get_json(port, "/api/devices")[1]["devices"])
    by_kid = {d["kid"]: d for d in listed}
    mine = by_kid[device.kid_hex]
    assert mine["status"] == "online" and mine["readings"] == 6 and mine["bundles"] == 3
    assert by_kid[other.kid_hex]["status"] == "new" and by_kid[other.kid_hex]["last_reading"] is None
    last = {v["name"]: v for v in mine["last_reading"]["values"]}
    assert last["t"]["unit"] == "°C" and 21 < last["t"]["value"] < 23 and last["t"]["raw_unit"] == "Cel"
    assert last["p"] == {**last["p"], "value": 1013.25, "unit": "hPa", "raw_value": "101325"}
    assert mine["last_reading"]["time"] >= now - 1  # time source 0: the gateway's receipt time
    ack_seen = wait_for(lambda: get_json(port, "/api/devices")[1]["devices"][0]["last_ack"])
    assert abs(ack_seen - time.time()) < 30

    path = f"/api/devices/{device.kid_hex}/readings"
    status, body = get_json(port, f"{path}?from={now - 300}&to={now + 60}")
    assert status == 200 and not body["truncated"]
    records = body["readings"]
    temps = [r for r in records if r["name"] == "t"]
    assert [r["seq"] for r in temps] == [0, 1, 2, 3, 4, 5]
    assert [r["time"] for r in temps][:4] == [now - 120, now - 119, now - 60, now - 59]
    # seconds since boot: the gateway's receipt time for the last, the device's spacing before it
    assert [r["time_estimated"] for r in temps] == [False] * 4 + [True] * 2
    assert [r["device_time"] for r in temps[4:]] == [42, 43] and temps[5]["time"] - temps[4]["time"] == 1
    assert now - 1 <= temps[5]["time"] <= time.time()
    # a narrower range, ISO 8601 bounds; and a limit keeps the newest
    iso_from = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 90))
    status, body = get_json(port, f"{path}?from={iso_from}&to={now - 30}")
    assert status == 200 and {r["seq"] for r in body["readings"]} == {2, 3}
    status, body = get_json(port, f"{path}?from={now - 300}&to={now - 30}&limit=2")
    assert body["truncated"] and [(r["seq"], r["name"]) for r in body["readings"]] == [(3, "t"), (3, "p")]

    status, raw_csv, headers = get(port, f"{path}?from={now - 300}&to={now + 60}&format=csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(raw_csv.decode())))
    assert len(rows) == 12 and rows[0]["name"] == "t" and rows[0]["unit"] == "°C"
    assert rows[1]["value"] == "1013.25" and rows[0]["time_iso"].endswith("Z")

    status, body = get_json(port, "/api/bundles")
    assert status == 200 and len(body["bundles"]) == 3
    newest = body["bundles"][0]
    assert newest["hash"] == pbundle.bundle_hash(since_boot).hex() and newest["state"] == "pending"
    assert get(port, newest["proof"])[0] == 202  # the link resolves: stored, not batched yet
    assert get_json(port, f"/api/bundles?kid={other.kid_hex}")[1]["bundles"] == []

    ctx = gateway.ctx
    ctx.db.run_sync(seal_batch, ctx.gateway_key, ctx.gateway_kid, "bundles", 100, time.time())
    batches = get_json(port, "/api/batches")[1]["batches"]
    assert len(batches) == 1 and batches[0]["bundles"] == 3 and batches[0]["state"] in ("queued", "forwarded")
    assert {b["state"] for b in get_json(port, "/api/bundles")[1]["bundles"]} <= {"batched", "forwarded"}
    assert get(port, newest["proof"])[0] == 200

    # a forged bundle (another device's key id on this device's topic) is rejected and counted
    peer = env.device_peer(other)
    try:
        peer.send(device.seal(1, time_s=now))
    finally:
        peer.close()
    rejections = wait_for(lambda: get_json(port, "/api/rejections")[1]["by_reason"])
    assert sum(rejections.values()) == 1


def test_a_clock_the_verifier_flags_is_placed_at_receipt_time(env, gateway):
    """A board whose clock says 1970 (flagged stale) must not vanish from today's plot."""
    device = env.devices[0]
    send_acked(env, device, [device.seal(3, time_s=1_234_255)])
    received = time.time()
    status, body = get_json(
        gateway.http_port, f"/api/devices/{device.kid_hex}/readings?from={int(received) - 60}"
    )
    temps = [r for r in body["readings"] if r["name"] == "t"]
    assert status == 200 and [r["device_time"] for r in temps] == [1_234_255, 1_234_256, 1_234_257]
    assert all(r["time_estimated"] for r in temps) and temps[2]["time"] - temps[0]["time"] == 2
    assert received - 30 < temps[2]["time"] <= received
    listed = get_json(gateway.http_port, "/api/devices")[1]["devices"]
    assert abs(listed[0]["last_reading"]["time"] - received) < 30


def test_bad_queries_get_a_400_that_says_what_to_send(env, gateway):
    port = gateway.http_port
    kid = env.devices[0].kid_hex
    for path, words in (
        (f"/api/devices/{kid}/readings?from=yesterday", "ISO 8601"),
        (f"/api/devices/{kid}/readings?form=1", "unknown parameter"),
        (f"/api/devices/{kid}/readings?from=200&to=100", "from <= to"),
        (f"/api/devices/{kid}/readings?format=xml", "json, csv"),
        (f"/api/devices/{kid}/readings?limit=0", "from 1 to"),
        (f"/api/devices/{kid}/readings?to=nan", "between 1970"),
        ("/api/devices/zz/readings", "hex digits"),
        ("/api/bundles?kid=12", "hex digits"),
        ("/api/bundles?limit=-1", "from 1 to"),
        ("/api/devices?x=1", "unknown parameter"),
    ):
        status, body = get_json(port, path)
        assert status == 400 and words in body["error"], (path, body)
    assert get_json(port, f"/api/devices/{'00' * 16}/readings")[0] == 404


def test_dashboard_pages_and_files(env, gateway):
    device = env.devices[0]
    port = gateway.http_port
    raw = device.seal(1, time_s=int(time.time()))
    send_acked(env, device, [raw])
    status, page, headers = get(port, "/")
    text = page.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert f'data-kid="{device.kid_hex}"' in text and "°C" in text and "hPa" in text
    assert "https://" not in text and 'src="http' not in text and 'href="http' not in text  # no CDN
    assert "broker connected" in text  # the gateway's own link, beside the devices'
    _, broker_state = get_json(port, "/api/broker")
    assert broker_state["connected"] is True and broker_state["port"] == env.port
    status, page, _ = get(port, f"/devices/{device.kid_hex}")
    assert status == 200 and f"/proofs/{pbundle.bundle_hash(raw).hex()}" in page.decode()
    assert "/static/vendor/uPlot.iife.min.js" in page.decode()
    assert get(port, "/devices/nothex")[0] == 400 and get(port, f"/devices/{'00' * 16}")[0] == 404
    status, script, headers = get(port, "/static/dashboard.js")
    assert status == 200 and b"setInterval(poll" in script
    status, uplot, _ = get(port, "/static/vendor/uPlot.iife.min.js")
    assert status == 200 and b"uPlot" in uplot
    for path in ("/static/../config.py", "/static/vendor/../../auth.py", "/static/nope.js"):
        assert get(port, path)[0] == 404


def test_listening_beyond_loopback_needs_a_password_file():
    with pytest.raises(ConfigError, match=r"http\.password_file"):
        from_mapping({"http": {"listen": "0.0.0.0:9100"}})
    with pytest.raises(ConfigError, match=r"http\.password_file"):
        from_mapping({"http": {"listen": "[::]:9100"}})
    assert (
        from_mapping({"http": {"listen": "0.0.0.0:9100", "password_file": "pw"}}).http.password_file == "pw"
    )
    for loopback in ("127.0.0.1:9100", "127.1.2.3:0", "localhost:9100", "::1:9100"):
        assert from_mapping({"http": {"listen": loopback}}).http.loopback


def test_password_guards_every_route_and_a_loose_file_stops_the_start(env, start_gateway, tmp_path):
    password_file = env.config.data_dir / "http-password"
    password_file.write_text("correct horse battery\n")
    os.chmod(password_file, 0o644)
    config = replace(env.config, http=replace(env.config.http, password_file="http-password"))
    with pytest.raises(PasswordFileError, match="chmod 600"):
        start_gateway(config)
    os.chmod(password_file, 0o600)
    gateway = start_gateway(config)
    try:
        port = gateway.http_port
        good = {"Authorization": "Basic " + base64.b64encode(b"pinseal:correct horse battery").decode()}
        bad = {"Authorization": "Basic " + base64.b64encode(b"pinseal:wrong").decode()}
        for path in ("/", "/api/devices", "/metrics", "/status", "/static/dashboard.js"):
            status, _, headers = get(port, path)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
            assert get(port, path, bad)[0] == 401
            assert get(port, path, {"Authorization": "Basic !!!"})[0] == 401
            assert get(port, path, good)[0] == 200
    finally:
        gateway.stop()


def test_csv_cells_a_device_chose_cannot_become_spreadsheet_formulas():
    assert csv_cell('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)" and csv_cell("-2150e-2") == "-2150e-2" and csv_cell(-3) == -3
    assert csv_cell("ENODEV") == "ENODEV" and csv_cell(None) is None


def test_values_in_the_units_a_person_reads():
    assert format_value("Cel", "2134e-2") == "21.3 °C"
    assert format_value("%RH", "4812e-2") == "48 %RH"
    assert format_value("Pa", "101325") == "1013.2 hPa"
    assert format_value("V", "3912e-3") == "3.91 V"
    assert human_value("Pa", "101325").value == 1013.25
    assert human_value("Cel", None).value is None and format_value(None, None) == "error"
    assert human_value("lx", "12").unit == "lx"
    assert quantity("t") == "temperature" and quantity("t:sht3x") == "temperature (sht3x)"


PARAMS = st.dictionaries(
    st.sampled_from(["from", "to", "limit", "format", "form", "x"]),
    st.one_of(
        st.text(max_size=30),
        st.integers(-(10**12), 10**13).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(str),
        st.sampled_from(["json", "csv", "2026-12-06T04:00:00Z", "2026-12-06", "1e400", "-0", "20000"]),
    ),
    max_size=5,
)


def test_dashboard_off_leaves_the_api():
    def paths(config):
        ctx = GatewayContext(config, None, None, b"", None)  # type: ignore[arg-type]  (routes only)
        return {r.canonical for r in make_app(ctx).router.resources()}

    assert "/" in paths(from_mapping({})) and "/api/devices" in paths(from_mapping({}))
    off = paths(from_mapping({"http": {"dashboard": False}}))
    assert "/" not in off and "/static/{name}" not in off and "/api/devices" in off and "/metrics" in off


@given(st.one_of(st.text(max_size=70), st.sampled_from(["00 " * 16, "0" * 32 + "\n", "AB" * 16, "ab" * 16])))
def test_key_ids_in_urls_are_32_hex_digits_or_a_query_error(text):
    try:
        kid = parse_kid(text)
    except QueryError:
        return
    assert len(kid) == 16 and kid.hex() == text.lower()


@given(PARAMS)
def test_query_parser_accepts_only_what_it_can_use(params):
    """Any query either parses into a sane, bounded one or raises QueryError, nothing else."""
    try:
        query = parse_readings_query(params, now=1_765_000_000.0)
    except QueryError as exc:
        assert str(exc)
        return
    assert 0 <= query.start <= query.end and query.end - query.start <= 366 * 86400
    assert 1 <= query.limit <= MAX_LIMIT and query.format in ("json", "csv")
