"""The board's /config.json as the firmware reads it (firmware/pinseal/config.py), built and checked here.

The firmware's defaults table is the one description of the file; rather than copying it (and drifting), it is
read from firmware/pinseal/config.py as a literal (`ast.literal_eval` of `DEFAULTS`, no firmware code runs on
the host). A config is checked here with the firmware's rules before it is written, so a typo is refused at
the bench, not found at the board's next boot.
"""

from __future__ import annotations

import ast
import copy
import json
import threading
from pathlib import Path
from typing import Any

from pinseal_provision import masking
from pinseal_provision.errors import BadInput
from pinseal_provision.profiles import FIRMWARE_DIR

_PARSE_LOCK = threading.Lock()
"""CPython 3.11 keeps the AST converter's recursion depth per interpreter, not per thread: two threads
parsing at once can fail with "SystemError: AST constructor recursion depth mismatch" (CPython
gh-106905). `pinseal-provision batch` enrolls boards in threads, and one board failed so in a test run."""
_parsed: dict[Path, dict[str, dict[str, Any]]] = {}


def firmware_defaults(firmware_dir: Path = FIRMWARE_DIR) -> dict[str, dict[str, Any]]:
    """The firmware's DEFAULTS table, parsed once per firmware folder (a fresh copy to each caller)."""
    path = firmware_dir / "pinseal" / "config.py"
    with _PARSE_LOCK:
        if path not in _parsed:
            _parsed[path] = _parse_defaults(path)
        return copy.deepcopy(_parsed[path])


def _parse_defaults(path: Path) -> dict[str, dict[str, Any]]:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "DEFAULTS" for t in node.targets
        ):
            return dict(ast.literal_eval(node.value))
    raise BadInput(f"no DEFAULTS table in {path}")


def check(config: dict[str, Any], defaults: dict[str, dict[str, Any]] | None = None) -> None:
    """The firmware's checks (config.merge): known sections/keys, types, required values, ranges."""
    defaults = firmware_defaults() if defaults is None else defaults
    for section, given in config.items():
        if section == "version":
            continue
        if section not in defaults:
            raise BadInput(f"config: unknown section {section!r}", f"sections: {', '.join(defaults)}")
        if not isinstance(given, dict):
            raise BadInput(f"config: {section} must be an object")
        for key in given:
            if key not in defaults[section]:
                raise BadInput(
                    f"config: unknown key {section}.{key}",
                    f"keys of {section}: {', '.join(defaults[section])}",
                )
    for section, keys in defaults.items():
        given = config.get(section, {})
        for key, default in keys.items():
            value = given.get(key, default)
            if default is None:
                if value is None and section in ("mqtt", "gateway"):
                    raise BadInput(f"config: {section}.{key} is required")
                continue
            want = type(default)
            ok = type(value) is want or (want is int and type(value) is float and value == int(value))
            if not ok:
                raise BadInput(
                    f"config: {section}.{key} must be {want.__name__}, not {masking.shown(key, value)}"
                )
    pk = config.get("gateway", {}).get("public_key")
    try:
        if not isinstance(pk, str) or len(bytes.fromhex(pk)) != 32:
            raise ValueError
    except ValueError as exc:
        raise BadInput("config: gateway.public_key must be 64 hex digits") from exc
    readings = config.get("bundling", {}).get("readings", defaults["bundling"]["readings"])
    if not 1 <= readings <= 32:
        raise BadInput("config: bundling.readings must be 1..32")
    if config.get("sampling", {}).get("interval_s", 1) < 1:
        raise BadInput("config: sampling.interval_s must be >= 1")


def parse_assignment(text: str, defaults: dict[str, dict[str, Any]] | None = None) -> tuple[str, str, Any]:
    """`section.key=value` -> (section, key, typed value): the type is the default's (JSON for others)."""
    defaults = firmware_defaults() if defaults is None else defaults
    name, sep, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot:
        raise BadInput(
            f"expected SECTION.KEY=VALUE, got {masking.shown(name, text) if sep else repr(text)}",
            "e.g. sampling.interval_s=30 or wifi.ssid=shed",
        )
    if section not in defaults or key not in defaults[section]:
        raise BadInput(f"config: unknown key {section}.{key}", f"sections: {', '.join(defaults)}")
    default = defaults[section][key]
    value: Any
    if isinstance(default, bool):
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise BadInput(f"{section}.{key} is true or false, not {masking.shown(key, raw)}")
        value = raw.lower() in ("true", "1", "yes", "on")
    elif isinstance(default, int):
        try:
            value = int(raw)
        except ValueError as exc:
            raise BadInput(f"{section}.{key} is a whole number, not {masking.shown(key, raw)}") from exc
    elif isinstance(default, str) or default is None:
        value = raw
        if default is None and section == "mqtt" and key == "port":
            value = int(raw)
    else:
        value = json.loads(raw)
    return section, key, value


def apply(config: dict[str, Any], assignments: list[tuple[str, str, Any]]) -> dict[str, Any]:
    out = {section: dict(values) for section, values in config.items() if isinstance(values, dict)}
    if "version" in config:
        out["version"] = config["version"]
    for section, key, value in assignments:
        out.setdefault(section, {})[key] = value
    check(out)
    return out


def encode(config: dict[str, Any]) -> bytes:
    return (json.dumps(config, sort_keys=True, separators=(",", ":")) + "\n").encode()
