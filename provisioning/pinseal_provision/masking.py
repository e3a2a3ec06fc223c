"""Secrets never reach a screen or a log: the board's Wi-Fi and MQTT passwords, and any key, token or
secret a config may gain, are replaced by a mask wherever provisioning prints a config or a value.

Public keys stay readable (an owner compares them with the gateway's); everything whose name says it is a
secret is masked, so a key added to the firmware's config later is masked without a change here.
"""

from __future__ import annotations

from typing import Any

MASK = "***"
_SECRET_WORDS = ("password", "passwd", "secret", "token", "psk", "private", "seed")


def is_secret(name: str) -> bool:
    """Whether a config key (e.g. 'password', 'api_token', 'wifi.password') names a secret."""
    leaf = name.rsplit(".", 1)[-1].lower()
    return any(word in leaf for word in _SECRET_WORDS)


def masked(value: Any) -> Any:
    """A copy of a config (nested dicts and lists) with every secret's value masked; an empty secret stays
    empty, so `status` still shows that no Wi-Fi password is set."""
    if isinstance(value, dict):
        return {
            key: (MASK if value_set(item) else item) if is_secret(str(key)) else masked(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def value_set(item: Any) -> bool:
    return item not in (None, "")


def shown(name: str, value: Any) -> str:
    """A value for a message about the key `name`: its repr, or the mask if the key is a secret."""
    return MASK if is_secret(name) else repr(value)
