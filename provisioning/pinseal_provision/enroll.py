"""Enrollment: the device makes its key, the fleet certifies it, the gateway registers it, the
device proves it.

The private key is made on the device (`pinseal.enroll.create_key()` in the firmware) and never crosses the
serial line: the tool only ever asks for the public key and key id, and nothing here reads /key.seed. Every
step can be cut and redone: the key is reused when present, a registration made by an earlier run is
recognised (its MQTT password comes back from the journal or from the board's config), files are written
atomically, and "enrolled" (certificate and config on the board) is the last thing to become true.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pinseal_protocol import bundle as pbundle
from pinseal_protocol import certificate as cert
from pinseal_protocol import keys
from pinseal_protocol.errors import RejectedMessage
from pinseal_provision import devconfig, fleet, masking
from pinseal_provision.device import Board
from pinseal_provision.errors import (
    AlreadyEnrolled,
    BadInput,
    DeviceError,
    NotDeployed,
    RegistryError,
    SelfTestFailed,
)
from pinseal_provision.registry import Gateway, Ingest, Journal, export_record

log = logging.getLogger(__name__)

CERT_PATH = "/cert.cbor"
CONFIG_PATH = "/config.json"
KEY_FILES = ("/key.seed", "/key.pub")
OUTBOX_DIR = "/outbox"  # the firmware's flash outbox (firmware/pinseal/outbox.py)
# Ed25519 key generation and a seal in pure MicroPython: seconds on a board, more in the VM under load.
KEYGEN_TIMEOUT_S = 180.0
SELF_TEST_TIMEOUT_S = 180.0
DEFAULT_STATE_DIR = Path.home() / ".local" / "state" / "pinseal-provision"


@dataclass
class EnrollOptions:
    fleet_key: Path | None
    gateway_config: Path | None
    gateway_public_key: str | None = None
    label: str | None = None
    interval_s: int = 60
    wifi_ssid: str = ""
    wifi_password: str = ""
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_tls: bool = False
    mqtt_ca: Path | None = None
    mqtt_server_hostname: str = ""
    bundle_readings: int = 16
    bundle_max_wait_s: int = 900
    export: Path | None = None
    ingest_db: Path | None = None
    state_dir: Path = DEFAULT_STATE_DIR
    force: bool = False
    new_key: bool = False
    self_test: bool = True


def bundle_interval_s(opts: EnrollOptions) -> int:
    """How often the device sends: a bundle when it holds `bundle_readings` readings, or once the oldest
    has waited `bundle_max_wait_s`. The gateway registers this as the device's expected interval; the
    sampling interval (what it registered before) made a healthy board bundling 16 readings "silent"
    between every two bundles."""
    return min(opts.interval_s * opts.bundle_readings, opts.bundle_max_wait_s + opts.interval_s)


@dataclass
class EnrollReport:
    port: str
    key_id: str = ""
    public_key: str = ""
    unique_id: str = ""
    board: str = ""
    registered: str = ""  # "new" or "existing"
    self_test: str = "not run"
    discarded_outbox_files: int = 0  # with --new-key: the old key's outbox, which no gateway would accept
    steps: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _discard_outbox(board: Board) -> int:
    """Remove the outbox's files; returns how many. A board that never ran the app has no outbox."""
    try:
        files = board.list_files(OUTBOX_DIR)
    except DeviceError:
        return 0
    return len(board.remove(files))


def device_info(board: Board) -> dict[str, Any]:
    """The firmware's `enroll.info()`: key state, ids, board, versions (never the seed)."""
    try:
        return board.call("from pinseal import enroll as _pe\n_pe.info()")
    except DeviceError as exc:
        if "ImportError" in str(exc) or "no module named" in str(exc).lower():
            raise NotDeployed(f"{board.port}: no pinseal firmware on the board ({exc})") from exc
        raise


def _create_key(board: Board) -> dict[str, Any]:
    board.fresh()
    return board.call(
        "import asyncio\nfrom pinseal import enroll as _pe\nasyncio.run(_pe.create_key())", KEYGEN_TIMEOUT_S
    )


def _gateway_public_key(opts: EnrollOptions, gateway: Gateway) -> str:
    if opts.gateway_public_key:
        try:
            keys.load_public_key(bytes.fromhex(opts.gateway_public_key))
        except ValueError as exc:
            raise BadInput("--gateway-public-key must be 64 hex digits (an Ed25519 public key)") from exc
        return opts.gateway_public_key.lower()
    return gateway.public_key().hex()


def build_config(opts: EnrollOptions, mqtt_password: str, gateway_public_key: str) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": 1,
        "wifi": {"ssid": opts.wifi_ssid, "password": opts.wifi_password},
        "mqtt": {
            "host": opts.mqtt_host,
            "port": opts.mqtt_port,
            "password": mqtt_password,
            "tls": opts.mqtt_tls,
            "ca": opts.mqtt_ca.read_text() if opts.mqtt_ca else "",
            "server_hostname": opts.mqtt_server_hostname,
        },
        "gateway": {"public_key": gateway_public_key},
        "sampling": {"interval_s": opts.interval_s},
        "bundling": {"readings": opts.bundle_readings, "max_wait_s": opts.bundle_max_wait_s},
    }
    devconfig.check(config)
    return config


def read_config(board: Board) -> dict[str, Any] | None:
    raw = board.read_file(CONFIG_PATH)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _write_checked(board: Board, path: str, data: bytes) -> None:
    import hashlib

    if board.write_file(path, data) != hashlib.sha256(data).hexdigest():
        raise DeviceError(f"{board.port}: {path} did not read back as written")


def enroll(board: Board, opts: EnrollOptions, say: Callable[[str], None] = log.info) -> EnrollReport:
    """The whole enrollment of the board open in `board` (deployed firmware required)."""
    report = EnrollReport(board.port)

    def step(text: str) -> None:
        report.steps.append(text)
        say(f"{board.port}: {text}")

    # Everything that can fail without the board first: no half-enrolled board for a missing key file.
    fleet_key = fleet.load(opts.fleet_key)
    if opts.gateway_config is None:
        raise BadInput(
            "no gateway given", "pass --gateway-config FILE (the gateway's TOML) to register the device"
        )
    gateway = Gateway(opts.gateway_config)
    gateway_pk = _gateway_public_key(opts, gateway)
    if opts.mqtt_ca is not None and not opts.mqtt_ca.is_file():
        raise BadInput(f"no CA file {opts.mqtt_ca}")
    build_config(opts, "x", gateway_pk)  # option errors now, before the board is touched
    journal = Journal(opts.state_dir)

    info = device_info(board)
    if info.get("enrolled") and not opts.force:
        raise AlreadyEnrolled(f"{board.port}: the board is enrolled already (key id {info.get('key_id')})")
    if opts.new_key:
        if not opts.force:
            raise BadInput("--new-key replaces the device's identity; it needs --force too")
        board.remove([CERT_PATH, CONFIG_PATH, *KEY_FILES])  # deleted on the device, never read
        step("old key, certificate and config removed on the device")
        report.discarded_outbox_files = _discard_outbox(board)
        if report.discarded_outbox_files:
            step(
                f"the old key's outbox removed ({report.discarded_outbox_files} files): its bundles "
                "would be refused under the new key, and resent forever they blocked every new reading"
            )
        info = device_info(board)
    if not info.get("has_key") or not info.get("public_key"):
        step("creating the device key on the device")
        info = _create_key(board)
    else:
        step("device key present: reused")
    public_key = bytes.fromhex(str(info["public_key"]))
    kid_hex = keys.key_id_hex(public_key)
    if info.get("key_id") != kid_hex:
        raise DeviceError(
            f"{board.port}: the device's key id {info.get('key_id')} is not SHA-256(public key)[:16]"
        )
    report.key_id, report.public_key = kid_hex, public_key.hex()
    report.unique_id, report.board = str(info.get("unique_id", "")), str(info.get("board", ""))

    # Registration (or the one an interrupted run made).
    state = gateway.devices().get(kid_hex)
    pending = journal.load(kid_hex)
    if state == "revoked":
        raise RegistryError(
            f"device {kid_hex} was revoked at the gateway",
            "a revoked key cannot come back: enroll with --force --new-key (the device makes a new key)",
        )
    if state is None:
        password = gateway.add(public_key, opts.label, bundle_interval_s(opts))
        journal.save(kid_hex, {"mqtt_password": password})
        report.registered = "new"
        step("registered with the gateway")
    else:
        on_board = read_config(board) or {}
        password = (pending or {}).get("mqtt_password") or on_board.get("mqtt", {}).get("password")
        if not password:
            raise RegistryError(
                f"device {kid_hex} is registered at the gateway but its MQTT password is lost "
                "(no journal entry, no config on the board)",
                f"revoke it (pinseal-gateway devices revoke {kid_hex}) and enroll with --force --new-key",
            )
        report.registered = "existing"
        step("already registered with the gateway: registration reused")

    # Certificate and config; the config last (it makes the board "enrolled").
    certificate = cert.issue(
        fleet_key,
        fleet_key.public_key,
        public_key=public_key,
        unique_id=bytes.fromhex(report.unique_id) if report.unique_id else b"",
        board=report.board,
        firmware=str(info.get("firmware", "")),
        micropython=str(info.get("micropython", "")),
    )
    _write_checked(board, CERT_PATH, certificate)
    step(f"certificate written ({len(certificate)} bytes, fleet key {fleet_key.key_id.hex()})")
    config = build_config(opts, password, gateway_pk)
    _write_checked(board, CONFIG_PATH, devconfig.encode(config))
    journal.clear(kid_hex)
    step("config written")

    record = {
        "kid": kid_hex,
        "public_key": public_key.hex(),
        "label": opts.label,
        "certificate": certificate.hex(),
        "board": report.board,
        "unique_id": report.unique_id,
    }
    if opts.export is not None:
        export_record(opts.export, record)
        step(f"network registry record exported to {opts.export}")
    if opts.ingest_db is not None:
        Ingest(opts.ingest_db).add(public_key, opts.label)
        step("registered with the network ingest")

    if opts.self_test:
        self_test(board, gateway, kid_hex)
        report.self_test = "passed"
        step("self-test passed: a bundle sealed on the device verifies against the registered key")
    return report


def self_test(board: Board, gateway: Gateway, kid_hex: str) -> pbundle.Bundle:
    """The device seals a reading plus our nonce; it must verify against the key the gateway registered."""
    registered = {d["kid"]: d for d in gateway.export()}
    entry = registered.get(kid_hex)
    if entry is None or entry.get("revoked_at") is not None:
        raise SelfTestFailed(f"device {kid_hex} is not an active device in the gateway's registry")
    public_key = keys.load_public_key(bytes.fromhex(entry["public_key"]))
    nonce = secrets.token_hex(16)
    board.fresh()
    answer = board.call(
        f"import asyncio\nfrom pinseal import enroll as _pe\nasyncio.run(_pe.self_test({nonce!r}))",
        SELF_TEST_TIMEOUT_S,
    )
    try:
        sealed = pbundle.verify_bundle(bytes.fromhex(str(answer["bundle"])), public_key)
    except (RejectedMessage, ValueError, KeyError) as exc:
        raise SelfTestFailed(f"{board.port}: the self-test bundle does not verify: {exc}") from exc
    if not any(
        r.name == "nonce" and r.string_value == nonce for reading in sealed.readings for r in reading.records
    ):
        raise SelfTestFailed(
            f"{board.port}: the self-test bundle does not carry this run's nonce (a replay?)"
        )
    return sealed


def status(
    board: Board, fleet_public_key: bytes | None = None, gateway: Gateway | None = None
) -> dict[str, Any]:
    """What the board is: firmware info, files, certificate (checked given the fleet key), registry."""
    system = board.system()
    out: dict[str, Any] = {"port": board.port, "system": system.__dict__}
    try:
        out["device"] = device_info(board)
    except NotDeployed:
        out["device"] = None
    firmware = (out["device"] or {}).get("firmware")
    out["versions"] = {"firmware": firmware or "not deployed", "micropython": system.micropython}
    out["files"] = board.list_files("/")
    raw = board.read_file(CERT_PATH)
    if raw is not None:
        if fleet_public_key is not None:
            try:
                out["certificate"] = cert.verify(raw, fleet_public_key).to_json()
            except cert.CertificateError as exc:
                out["certificate"] = {"error": str(exc)}
        else:
            out["certificate"] = {"bytes": len(raw), "verified": False}
    config = read_config(board)
    if config is not None:
        out["config"] = masking.masked(config)
    device = out["device"]
    if gateway is not None and device and device.get("key_id"):
        out["gateway"] = gateway.devices().get(device["key_id"], "not registered")
    return out


def config_show(board: Board) -> dict[str, Any]:
    """The board's /config.json, secrets masked (for printing)."""
    current = read_config(board)
    if current is None:
        raise NotDeployed(f"{board.port}: no /config.json on the board", "enroll the board first")
    return masking.masked(current)


def config_set(board: Board, parsed: list[tuple[str, str, Any]]) -> dict[str, Any]:
    """Change keys of /config.json on the board (`devconfig.parse_assignment` output, parsed before the
    board is touched; the result is checked with the firmware's rules; takes effect at boot)."""
    current = read_config(board)
    if current is None:
        raise NotDeployed(f"{board.port}: no /config.json on the board", "enroll the board first")
    new = devconfig.apply(current, parsed)
    _write_checked(board, CONFIG_PATH, devconfig.encode(new))
    return new


def revoke(
    kid_hex: str, gateway: Gateway, ingest: Ingest | None = None, board: Board | None = None
) -> list[str]:
    """Revoke at the gateway (and the network ingest); with a board, remove its certificate and config."""
    done = []
    state = gateway.devices().get(kid_hex)
    if state is None:
        raise RegistryError(f"device {kid_hex} is not registered at the gateway")
    if state != "revoked":
        gateway.revoke(kid_hex)
        done.append("revoked at the gateway")
    if ingest is not None:
        ingest.revoke(kid_hex)
        done.append("revoked at the network ingest")
    if board is not None:
        board.remove([CERT_PATH, CONFIG_PATH])
        done.append(
            "certificate and config removed from the board (its key stays; a new identity needs --new-key)"
        )
    return done
