"""The commented configuration file `pinseal-gateway init` writes: every key, its default, what it does.

Rendered from `config.GatewayConfig`'s own defaults, so the file can never disagree with what the
gateway does when a key is left out; only the comments live here. Keys stay commented out (`# key =
default`) except the ones `init` was told or had to decide (the data folder): an upgrade that changes a
default then reaches every key the owner never set, as Debian's conffiles do it.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from pinseal_gateway.config import GatewayConfig

SECTION_NOTES: dict[str, str] = {
    "gateway": "where the gateway keeps its state, and its logging",
    "mqtt": "the broker devices publish to (the gateway's own Mosquitto)",
    "verify": "what the gateway accepts from a device",
    "pipeline": "how received bundles are grouped for verification and commit",
    "devices": "when a registered device counts as silent",
    "batch": "signed Merkle batches of stored bundles, for the network",
    "uplink": "where batches go",
    "http": "the local HTTP API: /metrics, /status, /proofs/<bundle-hash>",
    "homeassistant": "Home Assistant MQTT discovery (docs/gateway.md, 'Home Assistant')",
    "serial": "boards wired to this machine (docs/transports.md, 'Serial'); none read unless listed",
    "ble": "BLE intake for boards without Wi-Fi, through BlueZ (docs/gateway.md, 'BLE')",
    "anchor": "this gateway's batches anchored on an EVM chain (docs/anchoring.md); needs the anchor extra",
}

KEY_NOTES: dict[str, str] = {
    "serial.ports": 'device paths or pyserial URLs, e.g. ["/dev/ttyUSB0", "rfc2217://mast:4000"]',
    "serial.usb_ids": "'vid:pid' of USB-UART bridges read as they appear, e.g. [\"10c4:ea60\"]",
    "serial.baudrate": "the boards' UART speed (firmware serial.baudrate)",
    "serial.reopen_s": "seconds between attempts to open a port that is unplugged or not there yet",
    "gateway.data_dir": "SQLite database, gateway key, MQTT password (folder 0700, files 0600)",
    "gateway.key_file": "relative to data_dir; the gateway's Ed25519 seed, 0600, never overwritten",
    "gateway.log_level": "DEBUG, INFO, WARNING or ERROR; `run --log-level` overrides it [reload]",
    "mqtt.host": "the broker's address; the generated broker listens here too",
    "mqtt.port": "the broker's port",
    "mqtt.username": "the gateway's own broker login",
    "mqtt.password_file": "relative to data_dir, 0600; created by `init` / `broker-config`",
    "mqtt.client_id": "the generated broker config uses the username instead",
    "mqtt.keepalive_s": "seconds; a dead link is dropped after one unanswered keepalive",
    "verify.max_future_s": "reading times further ahead than this are flagged 'future' (kept, not rejected)",
    "verify.max_age_s": "older than this (30 days) are flagged 'stale' (kept, not rejected)",
    "verify.max_bundle_bytes": "larger bundles are rejected",
    "pipeline.max_group": "messages verified and committed in one transaction",
    "pipeline.queue_size": "received, not yet committed; the MQTT intake waits beyond it",
    "pipeline.verify_process": "verify in a worker process; false on a one-core board",
    "devices.expected_interval_s": "a device's reporting interval unless registered with --interval [reload]",
    "devices.silent_after_intervals": "silent after this many missed intervals [reload]",
    "batch.interval_s": "seal a batch this often [reload]",
    "batch.max_bundles": "or as soon as this many bundles wait [reload]",
    "batch.max_bytes": "a batch's uplink body at most this; >= max_bundle_bytes + 1088, <= 16 MiB [reload]",
    "batch.mode": "'bundles' (the network gets every bundle's bytes) or 'proofs' (protocol §9.7)",
    "uplink.kind": "'http', 'mqtt' or 'none' (keep batches here)",
    "uplink.url": "the network ingest's batch endpoint (kind = 'http')",
    "uplink.mqtt_host": "the network's broker (kind = 'mqtt')",
    "uplink.mqtt_port": "its port",
    "uplink.mqtt_topic": "{gateway_kid} is replaced by the gateway's key id",
    "uplink.backoff_initial_s": "first retry delay after a failed send [reload]",
    "uplink.backoff_max_s": "longest retry delay [reload]",
    "http.listen": "host:port of the dashboard and API; 127.0.0.1 keeps it on this machine",
    "http.password_file": "relative to data_dir, 0600: basic auth on every route; needed beyond loopback",
    "http.username": "the basic-auth user name",
    "http.dashboard": "false: no HTML at /, only the API and metrics",
    "homeassistant.enabled": "publish discovery configs, verified readings and availability",
    "homeassistant.discovery_prefix": "Home Assistant's discovery prefix (its MQTT integration's setting)",
    "homeassistant.state_prefix": "where each device's state and availability go",
    "homeassistant.broker": "'pinseal' (this gateway's Mosquitto) or 'external' (host, port, login below)",
    "homeassistant.host": "the external broker (broker = 'external')",
    "homeassistant.port": "its port",
    "homeassistant.username": "the gateway's publishing login",
    "homeassistant.password_file": "relative to data_dir, 0600; created by broker-config for 'pinseal'",
    "homeassistant.tls": "TLS to the external broker",
    "homeassistant.ca_file": "CA bundle to trust for TLS; empty: the system's",
    "homeassistant.ha_username": "Home Assistant's read-only login on this gateway's broker",
    "homeassistant.ha_password_file": "relative to data_dir, 0600; enter it in Home Assistant",
    "homeassistant.publish_every_s": "how often new verified readings are published",
    "ble.enabled": "scan for pinseal devices over BLE and take their bundles",
    "ble.adapter": "the BlueZ adapter to scan and connect with",
    "ble.max_connections": "connection slots: devices served at once (1 to 8)",
    "ble.connect_timeout_s": "connect and resolve services within this",
    "ble.idle_timeout_s": "disconnect after this long without a chunk",
    "ble.scan_watchdog_s": "restart discovery after this long without an advertisement",
    "ble.backoff_max_s": "a failing device is retried after 0.5 s, doubling up to this",
    "ble.use_start_notify": "StartNotify instead of AcquireNotify (may lose notifications)",
    "anchor.enabled": "anchor this gateway's batches (the network's ingest anchors them anyway)",
    "anchor.rpc": "JSON-RPC URL of a node of the chain",
    "anchor.chain": "profile name (base, polygon, ethereum, iotex, peaq) or chain id",
    "anchor.key_file": "anchoring key in the data folder, 0600 (`pinseal-gateway anchor-keygen`)",
    "anchor.interval_s": "seconds between roots: one transaction each",
    "anchor.mode": "calldata (cheapest) or contract (findable by log filter)",
    "anchor.contract": "the PinsealAnchor contract's address (contract mode)",
    "anchor.confirmations": "depth before a root counts as anchored; 0: the chain profile's",
}

HEADER = """\
# pinseal gateway configuration, written by `pinseal-gateway init`.
# Every key is optional: a commented-out key shows its default. Keys marked [reload] take effect on
# SIGHUP (`systemctl reload pinseal-gateway`); any other change needs a restart, and the gateway logs
# which. Reference: docs/gateway.md, "Configuration".
"""


def toml_value(value: Any) -> str:
    """A default as TOML: strings quoted (backslash and quote escaped), booleans lower case, sequences as
    arrays. TOML has no null: a key without a default is written by `render` as a comment only."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    text = str(value) if isinstance(value, Path) else value
    if not isinstance(text, str):
        raise TypeError(f"no TOML form for {value!r}")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render(settings: dict[str, Any] | None = None, defaults: Any = None) -> str:
    """The commented file; `settings` ("section.key" -> value) are written as active keys. `defaults`: the
    configuration whose sections and values are shown (GatewayConfig())."""
    settings = dict(settings or {})
    defaults = GatewayConfig() if defaults is None else defaults
    out = [HEADER]
    for section in fields(defaults):
        values = getattr(defaults, section.name)
        note = SECTION_NOTES.get(section.name)
        out.append(f"\n[{section.name}]" + (f"  # {note}" if note else "") + "\n")
        for key in fields(values):
            name = f"{section.name}.{key.name}"
            active = name in settings
            value = settings.pop(name) if active else getattr(values, key.name)
            note = KEY_NOTES.get(name)
            if value is None:  # no default (an optional setting): shown, never active
                line = f"# {key.name} ="
                note = f"{note} (unset by default)" if note else "unset by default"
            else:
                line = f"{key.name} = {toml_value(value)}"
                if not active:
                    line = "# " + line
            out.append(f"{line:<52} # {note}\n" if note else f"{line}\n")
    if settings:
        raise KeyError(f"not configuration keys: {', '.join(sorted(settings))}")
    return "".join(out)
