"""The configuration table: defaults, types, and the errors a user sees for a bad file."""

from __future__ import annotations

import pytest

from pinseal_gateway.config import ConfigError, GatewayConfig, from_mapping


def test_defaults_are_the_documented_ones() -> None:
    config = GatewayConfig()
    assert config.batch.interval_s == 60
    assert config.mqtt.port == 1883
    assert config.http.port == 9100


def test_fractional_seconds_are_accepted_where_the_unit_is_seconds() -> None:
    # Regression: batch.interval_s defaulted to the int 60, so 0.5 was refused as "must be an integer".
    config = from_mapping({"batch": {"interval_s": 0.5}, "uplink": {"backoff_initial_s": 2}})
    assert config.batch.interval_s == 0.5
    assert config.uplink.backoff_initial_s == 2.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"batch": {"max_bundles": 1.5}}, "batch.max_bundles"),
        ({"mqtt": {"port": "1883"}}, "mqtt.port"),
        ({"batch": {"colour": 1}}, "unknown key batch.colour"),
        ({"batch": {"mode": "all"}}, "batch.mode"),
        ({"batch": {"interval_s": 0}}, "batch.interval_s must be positive"),
        ({"pipeline": {"verify_process": "no"}}, "pipeline.verify_process must be true or false"),
        ({"pipeline": {"verify_process": 0}}, "pipeline.verify_process must be true or false"),
    ],
)
def test_bad_values_name_their_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(raw)


def test_boolean_keys_take_booleans() -> None:
    # Regression: a bool default fell into the numeric branch, so every bool value was refused.
    assert from_mapping({"pipeline": {"verify_process": False}}).pipeline.verify_process is False
    assert GatewayConfig().pipeline.verify_process is True
