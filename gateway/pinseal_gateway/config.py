"""The gateway's configuration: one TOML file, every key optional, defaults as in docs/gateway.md.

Validation happens once, here, so the rest of the gateway can trust its numbers; a bad file is a
`ConfigError` naming the key, raised before anything is opened or connected.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration file is unreadable, or a key is unknown or has a bad value."""


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class GatewaySection:
    data_dir: Path = Path("/var/lib/pinseal-gateway")
    key_file: str = "gateway.key"
    log_level: str = "INFO"  # `run --log-level` overrides it; reloaded on SIGHUP


@dataclass(frozen=True)
class MqttSection:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = "pinseal-gateway"
    password_file: str = "mqtt-password"
    client_id: str = "pinseal-gateway"
    keepalive_s: int = 30


@dataclass(frozen=True)
class VerifySection:
    max_future_s: int = 300
    max_age_s: int = 2592000
    max_bundle_bytes: int = 2048


@dataclass(frozen=True)
class PipelineSection:
    """How the ingest pipeline groups work (not in the original design table; see docs/gateway.md)."""

    max_group: int = 500  # messages verified and committed together (one transaction, one fsync)
    queue_size: int = 5000  # messages received but not yet processed; the MQTT thread waits beyond it
    verify_process: bool = True  # verify in a worker process (off the GIL); false: in a thread (one core)


@dataclass(frozen=True)
class DevicesSection:
    expected_interval_s: int = 60
    silent_after_intervals: int = 3


MAX_BATCH_BYTES = 16 * 1024 * 1024
"""Upper bound of `batch.max_bytes`: the reference network ingest's default body limit (`pinseal-ingest
run --max-body`); a larger batch could never be delivered there. An ingest with a smaller limit answers
413 with its limit and the uplink reseals to fit (docs/gateway.md)."""
BATCH_FRAMING_BYTES = 1024 + 64
"""What a batch body holds besides its bundles: the signed header (at most 1,024 bytes, protocol 9.2)
and the CBOR framing; with one bundle of `verify.max_bundle_bytes` it is the smallest useful cap."""


@dataclass(frozen=True)
class BatchSection:
    interval_s: float = 60.0
    max_bundles: int = 1000
    max_bytes: int = 1024 * 1024  # uplink body; 1,000 typical bundles (~300 B) fit, 16x under the ingest's
    mode: str = "bundles"


@dataclass(frozen=True)
class UplinkSection:
    kind: str = "http"
    url: str = "http://127.0.0.1:8700/v1/batches"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_topic: str = "pinseal/v1/gateways/{gateway_kid}/batches"
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0


@dataclass(frozen=True)
class HttpSection:
    """The API and dashboard. Loopback by default; any other address needs `password_file` (HTTP basic
    auth as `username`, password the file's first line, the file 0600)."""

    listen: str = "127.0.0.1:9100"
    password_file: str = ""  # relative to data_dir; "" = no password (allowed on loopback only)
    username: str = "pinseal"
    dashboard: bool = True  # serve the dashboard at / (the JSON API is always there)

    @property
    def loopback(self) -> bool:
        """Whether `listen` is a loopback address (127.0.0.0/8, ::1, localhost)."""
        host = self.host.strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0] or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True)
class HomeAssistantSection:
    """Home Assistant MQTT discovery (docs/gateway.md "Home Assistant"): off unless enabled.

    `broker = "pinseal"`: the gateway's own Mosquitto ([mqtt] host and port), where `broker-config`
    adds the publisher's login and a read-only `ha_username` login for Home Assistant. `"external"`:
    a broker Home Assistant already uses, at `host`/`port`, with `username` and `password_file`.
    """

    enabled: bool = False
    discovery_prefix: str = "homeassistant"
    state_prefix: str = "pinseal/ha"
    broker: str = "pinseal"
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = "pinseal-gateway-ha"
    password_file: str = "ha-publisher-password"
    tls: bool = False
    ca_file: str = ""  # TLS: the CA bundle to trust; empty: the system's
    ha_username: str = "homeassistant"
    ha_password_file: str = "homeassistant-password"
    publish_every_s: float = 1.0


@dataclass(frozen=True)
class SerialSection:
    """Boards wired to the gateway (docs/transports.md, "Serial"): the ports read for §10 frames.

    `ports`: device paths (/dev/ttyACM0, /dev/serial/by-id/...) or pyserial URLs (rfc2217://host:port);
    `usb_ids`: "vid:pid" pairs (hex) of USB-UART bridges whose ports are read as they appear. Nothing
    is read unless one of them names a port: a gateway never opens serial ports it was not given.
    """

    ports: tuple[str, ...] = ()
    usb_ids: tuple[str, ...] = ()
    baudrate: int = 115200
    reopen_s: float = 2.0  # a port unplugged or not there yet is tried again this often


@dataclass(frozen=True)
class BleSection:
    """The BLE intake (docs/gateway.md "BLE"): boards without Wi-Fi, through BlueZ. Off unless enabled."""

    enabled: bool = False
    adapter: str = "hci0"
    max_connections: int = 2  # connection slots: devices served at once (BlueZ adapters manage a few)
    connect_timeout_s: float = 20.0  # connect and GATT resolution, as Home Assistant allows
    idle_timeout_s: float = 10.0  # no chunk for this long while nothing is in flight: disconnect
    scan_watchdog_s: float = 90.0  # no advertisement for this long while devices are expected: restart
    backoff_max_s: float = 120.0  # per-device backoff after failed sessions, doubling up to this
    use_start_notify: bool = False  # bleak's StartNotify instead of AcquireNotify (bleak #1343)


@dataclass(frozen=True)
class AnchorSection:
    """The gateway anchoring its own batches on an EVM chain (docs/anchoring.md, "Running it").

    Off unless enabled; the network's ingest anchors everything it stores in any case, so this is for an
    owner who wants their gateway's batches on a chain under their own key, independent of the network.
    Needs the `anchor` extra (web3). `key_file` is relative to the data folder (0600; `pinseal-gateway
    anchor-keygen` makes it); `chain` a profile name (base, polygon, ...) or a chain id; `confirmations` 0:
    the chain profile's depth.
    """

    enabled: bool = False
    rpc: str = ""
    chain: str = ""
    key_file: str = "anchor.key"
    interval_s: float = 3600.0
    mode: str = "calldata"
    contract: str = ""
    confirmations: int = 0


ADAPTER_NAME = re.compile(r"hci[0-9]{1,3}")
MAX_BLE_CONNECTIONS = 8


@dataclass(frozen=True)
class GatewayConfig:
    gateway: GatewaySection = field(default_factory=GatewaySection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    verify: VerifySection = field(default_factory=VerifySection)
    pipeline: PipelineSection = field(default_factory=PipelineSection)
    devices: DevicesSection = field(default_factory=DevicesSection)
    batch: BatchSection = field(default_factory=BatchSection)
    uplink: UplinkSection = field(default_factory=UplinkSection)
    http: HttpSection = field(default_factory=HttpSection)
    homeassistant: HomeAssistantSection = field(default_factory=HomeAssistantSection)
    serial: SerialSection = field(default_factory=SerialSection)
    ble: BleSection = field(default_factory=BleSection)
    anchor: AnchorSection = field(default_factory=AnchorSection)

    @property
    def data_dir(self) -> Path:
        return self.gateway.data_dir

    @property
    def key_path(self) -> Path:
        return self.data_dir / self.gateway.key_file

    @property
    def db_path(self) -> Path:
        return self.data_dir / "gateway.sqlite"

    @property
    def mqtt_password_path(self) -> Path:
        return self.data_dir / self.mqtt.password_file

    @property
    def ha_publisher_password_path(self) -> Path:
        """The Home Assistant publisher's MQTT password (relative names: in the data folder)."""
        return self.data_dir / self.homeassistant.password_file

    @property
    def ha_user_password_path(self) -> Path:
        """The password Home Assistant logs in with on the gateway's own broker."""
        return self.data_dir / self.homeassistant.ha_password_file

    @property
    def http_password_path(self) -> Path | None:
        return self.data_dir / self.http.password_file if self.http.password_file else None


_SECTIONS: dict[str, type] = {f.name: f.type for f in fields(GatewayConfig)}  # type: ignore[misc]


def load_config(path: Path | None) -> GatewayConfig:
    """Read and validate a TOML file (None: all defaults). A relative data_dir is relative to the file."""
    if path is None:
        return GatewayConfig()
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return from_mapping(raw, base_dir=Path(path).parent)


def from_mapping(raw: dict[str, Any], base_dir: Path | None = None) -> GatewayConfig:
    """Build a config from parsed TOML (tests use this directly)."""
    config = GatewayConfig()
    for section_name, values in raw.items():
        if section_name not in _SECTIONS:
            raise ConfigError(f"unknown section [{section_name}]")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section_name}] must be a table")
        current = getattr(config, section_name)
        config = replace(config, **{section_name: _section(section_name, current, values, base_dir)})
    validate(config)
    return config


def _section(name: str, current: Any, values: dict[str, Any], base_dir: Path | None) -> Any:
    known = {f.name: f for f in fields(current)}
    updates: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown key {name}.{key}")
        default = getattr(current, key)
        if isinstance(default, Path):
            if not isinstance(value, str):
                raise ConfigError(f"{name}.{key} must be a path string")
            path = Path(value)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            value = path
        elif isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name}.{key} must be a list of strings, not {value!r}")
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{name}.{key} must be true or false, not {value!r}")
        elif not isinstance(value, type(default)):
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            elif isinstance(default, int) and isinstance(value, float) and value.is_integer():
                raise ConfigError(f"{name}.{key} must be an integer")
            else:
                raise ConfigError(f"{name}.{key} must be {type(default).__name__}, not {value!r}")
        updates[key] = value
    return replace(current, **updates)


def validate(config: GatewayConfig) -> None:
    """Cross-key and range checks; `ConfigError` naming the key (also for a config merged on reload)."""
    positive = {
        "mqtt.port": config.mqtt.port,
        "mqtt.keepalive_s": config.mqtt.keepalive_s,
        "verify.max_future_s": config.verify.max_future_s,
        "verify.max_age_s": config.verify.max_age_s,
        "verify.max_bundle_bytes": config.verify.max_bundle_bytes,
        "pipeline.max_group": config.pipeline.max_group,
        "pipeline.queue_size": config.pipeline.queue_size,
        "devices.expected_interval_s": config.devices.expected_interval_s,
        "devices.silent_after_intervals": config.devices.silent_after_intervals,
        "batch.interval_s": config.batch.interval_s,
        "batch.max_bundles": config.batch.max_bundles,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be positive, not {value}")
    if not 0 < config.mqtt.port < 65536:
        raise ConfigError(f"mqtt.port out of range: {config.mqtt.port}")
    smallest = config.verify.max_bundle_bytes + BATCH_FRAMING_BYTES
    if not smallest <= config.batch.max_bytes <= MAX_BATCH_BYTES:
        raise ConfigError(
            f"batch.max_bytes must be at least {smallest} (one bundle of verify.max_bundle_bytes and the "
            f"batch header) and at most {MAX_BATCH_BYTES} (the network ingest's body limit), "
            f"not {config.batch.max_bytes}"
        )
    if config.gateway.log_level not in LOG_LEVELS:
        raise ConfigError(
            f"gateway.log_level must be one of {', '.join(LOG_LEVELS)}, not {config.gateway.log_level!r}"
        )
    if config.batch.mode not in ("bundles", "proofs"):
        raise ConfigError(f"batch.mode must be 'bundles' or 'proofs', not {config.batch.mode!r}")
    if config.uplink.kind not in ("http", "mqtt", "none"):
        raise ConfigError(f"uplink.kind must be 'http', 'mqtt' or 'none', not {config.uplink.kind!r}")
    _validate_homeassistant(config.homeassistant)
    _validate_serial(config.serial)
    _validate_anchor(config.anchor)
    _validate_ble(config.ble)
    try:
        port = config.http.port
    except ValueError as exc:
        raise ConfigError(f"http.listen must be host:port, not {config.http.listen!r}") from exc
    if not 0 <= port < 65536:
        raise ConfigError(f"http.listen port out of range: {config.http.listen!r}")
    if not config.http.loopback and not config.http.password_file:
        raise ConfigError(
            f"http.listen {config.http.listen!r} is not a loopback address: anyone on that network could "
            "read the readings. Set http.password_file (a 0600 file in data_dir holding the dashboard's "
            "password, e.g. `openssl rand -base64 18 > http-password; chmod 600 http-password`) "
            'or listen on "127.0.0.1:9100"'
        )
    if not config.http.username or ":" in config.http.username:
        raise ConfigError(f"http.username must be non-empty and without ':', not {config.http.username!r}")


def _validate_topic_prefix(key: str, value: str) -> None:
    """A prefix is a plain topic path: no wildcards, no empty levels (a leading or trailing slash)."""
    if not value or any(c in value for c in "#+\0") or "" in value.split("/"):
        raise ConfigError(f"{key} must be a topic path without wildcards or empty levels, not {value!r}")


def _validate_serial(serial: SerialSection) -> None:
    if serial.baudrate < 300:
        raise ConfigError(f"serial.baudrate must be at least 300, not {serial.baudrate}")
    if serial.reopen_s <= 0:
        raise ConfigError(f"serial.reopen_s must be positive, not {serial.reopen_s}")
    for port in serial.ports:
        if not port.strip():
            raise ConfigError("serial.ports must not hold an empty name")
    for usb_id in serial.usb_ids:
        vid, _, pid = usb_id.partition(":")
        try:
            ok = len(vid) == 4 and len(pid) == 4 and int(vid, 16) >= 0 and int(pid, 16) >= 0
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(
                f"serial.usb_ids holds {usb_id!r}: each must be 'vid:pid' in hex, e.g. '10c4:ea60'"
            )


def _validate_anchor(anchor: AnchorSection) -> None:
    if not anchor.enabled:
        return
    if not anchor.rpc or not anchor.chain:
        raise ConfigError("anchor.enabled needs anchor.rpc (the chain node's URL) and anchor.chain")
    if not anchor.rpc.startswith(("http://", "https://")):
        raise ConfigError(f"anchor.rpc must be an http(s):// URL, not {anchor.rpc!r}")
    if anchor.mode not in ("calldata", "contract") or (anchor.mode == "contract" and not anchor.contract):
        raise ConfigError("anchor.mode is calldata, or contract with anchor.contract set")
    if anchor.interval_s <= 0 or anchor.confirmations < 0:
        raise ConfigError("anchor.interval_s must be positive and anchor.confirmations not negative")


def _validate_homeassistant(ha: HomeAssistantSection) -> None:
    if ha.broker not in ("pinseal", "external"):
        raise ConfigError(f"homeassistant.broker must be 'pinseal' or 'external', not {ha.broker!r}")
    _validate_topic_prefix("homeassistant.discovery_prefix", ha.discovery_prefix)
    _validate_topic_prefix("homeassistant.state_prefix", ha.state_prefix)
    if not 0 < ha.port < 65536:
        raise ConfigError(f"homeassistant.port out of range: {ha.port}")
    if ha.publish_every_s <= 0:
        raise ConfigError(f"homeassistant.publish_every_s must be positive, not {ha.publish_every_s}")
    for key in ("username", "ha_username"):
        name = getattr(ha, key)
        if not name or any(c in name for c in ":\n"):
            raise ConfigError(f"homeassistant.{key} must be a non-empty MQTT username, not {name!r}")


def _validate_ble(ble: BleSection) -> None:
    if not ADAPTER_NAME.fullmatch(ble.adapter):
        raise ConfigError(f"ble.adapter must name a BlueZ adapter such as 'hci0', not {ble.adapter!r}")
    if not 1 <= ble.max_connections <= MAX_BLE_CONNECTIONS:
        raise ConfigError(
            f"ble.max_connections must be 1 to {MAX_BLE_CONNECTIONS}, not {ble.max_connections}"
        )
    for key in ("connect_timeout_s", "idle_timeout_s", "scan_watchdog_s", "backoff_max_s"):
        value = getattr(ble, key)
        if value <= 0:
            raise ConfigError(f"ble.{key} must be positive, not {value}")
