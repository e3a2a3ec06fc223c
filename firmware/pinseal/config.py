# /config.json, written by provisioning (docs/firmware.md, "Configuration"): one defaults table, merged with
# the file and checked once at boot, so a bad value stops the app with a message naming it instead of failing
# hours later in the middle of a send.
import json

CONFIG_PATH = "/config.json"

# section -> key -> default (None: required when the section is used)
DEFAULTS = {
    "wifi": {"ssid": "", "password": "", "timeout_s": 20},
    "mqtt": {
        "host": None,
        "port": 1883,
        "password": None,
        "tls": False,
        "ca": "",  # PEM text of the CA that signed the broker's certificate (tls only)
        "server_hostname": "",
        "keepalive_s": 60,
        "backoff_max_s": 60,
    },
    # the UART of the serial link: -1 takes the board profile's "uart" (docs/transports.md)
    "serial": {"uart": -1, "tx": -1, "rx": -1, "baudrate": 115200},
    # transports in order of preference: the first that links within link_timeout_s carries the outbox, the
    # more preferred ones are tried again every retry_s
    "link": {"transports": ["mqtt"], "link_timeout_s": 30, "retry_s": 300},
    "gateway": {"public_key": None},  # hex of the gateway's Ed25519 public key: acks are checked with it
    "sampling": {"interval_s": 60},
    "bundling": {"readings": 16, "max_wait_s": 900},
    "outbox": {"capacity_bytes": 32768},
    "time": {"ntp": True, "ntp_host": "pool.ntp.org", "resync_s": 21600},
    "power": {"deepsleep": False},
    "safe_mode": {"window_s": 3, "pin": -1, "pin_active": 0},
    "watchdog": {"timeout_s": 60},
}


class ConfigError(ValueError):
    pass


_TRANSPORTS = ("mqtt", "ble", "serial")


def _check_type(section, key, value, default, used=True):
    if default is None and not used:
        return
    if default is None:
        if value is None:
            raise ConfigError("config: %s.%s is required" % (section, key))
        return
    want = type(default)
    if want is int and type(value) is bool:
        raise ConfigError("config: %s.%s must be a number" % (section, key))
    if type(value) is not want and not (want is int and type(value) is float and value == int(value)):
        raise ConfigError("config: %s.%s must be %s" % (section, key, want.__name__))


def merge(raw):
    """The defaults with the file's values over them; unknown sections and keys are refused (typos)."""
    if not isinstance(raw, dict):
        raise ConfigError("config: the file must hold a JSON object")
    out = {}
    link = raw.get("link", {})
    transports = link.get("transports", DEFAULTS["link"]["transports"]) if isinstance(link, dict) else None
    for section, keys in DEFAULTS.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError("config: %s must be an object" % section)
        merged = {}
        for key, default in keys.items():
            value = given.get(key, default)
            # a transport's required keys are required only when it is used
            used = section != "mqtt" or not isinstance(transports, list) or "mqtt" in transports
            _check_type(section, key, value, default, used)
            merged[key] = int(value) if type(default) is int and type(value) is float else value
        for key in given:
            if key not in keys:
                raise ConfigError("config: unknown key %s.%s" % (section, key))
        out[section] = merged
    for section in raw:
        if section not in DEFAULTS and section != "version":
            raise ConfigError("config: unknown section %s" % section)
    pk = out["gateway"]["public_key"]
    if not isinstance(pk, str) or len(pk) != 64:
        raise ConfigError("config: gateway.public_key must be 64 hex digits")
    try:
        out["gateway"]["public_key"] = bytes.fromhex(pk)
    except ValueError:
        raise ConfigError("config: gateway.public_key must be 64 hex digits")
    names = out["link"]["transports"]
    if not names or any(n not in _TRANSPORTS for n in names) or len(set(names)) != len(names):
        raise ConfigError("config: link.transports must list some of %s, each once" % (_TRANSPORTS,))
    for key in ("link_timeout_s", "retry_s"):
        if out["link"][key] < 1:
            raise ConfigError("config: link.%s must be >= 1" % key)
    if out["serial"]["baudrate"] < 300:
        raise ConfigError("config: serial.baudrate must be >= 300")
    n = out["bundling"]["readings"]
    if not 1 <= n <= 32:
        raise ConfigError("config: bundling.readings must be 1..32")
    if out["sampling"]["interval_s"] < 1:
        raise ConfigError("config: sampling.interval_s must be >= 1")
    return out


def load(path=CONFIG_PATH):
    """The merged config, or None when the file does not exist (the board waits for provisioning)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    try:
        raw = json.loads(text)
    except ValueError:
        raise ConfigError("config: %s is not valid JSON" % path)
    return merge(raw)
