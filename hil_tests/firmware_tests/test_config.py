# /config.json: defaults merged, required values and types checked, typos refused, each with a message that
# names the key (a board shows it at the REPL instead of failing hours later).
from pinseal import config

GOOD = {
    "mqtt": {"host": "127.0.0.1", "password": "pw"},
    "gateway": {"public_key": "11" * 32},
}


def _error(raw):
    try:
        config.merge(raw)
    except config.ConfigError as e:
        return str(e)
    raise AssertionError("accepted: %r" % (raw,))


def test_defaults_fill_what_the_file_leaves_out():
    cfg = config.merge(GOOD)
    assert cfg["mqtt"]["port"] == 1883 and cfg["bundling"]["readings"] == 16
    assert cfg["gateway"]["public_key"] == bytes([0x11]) * 32


def test_required_values_are_named():
    assert "mqtt.host" in _error({"mqtt": {"password": "pw"}, "gateway": GOOD["gateway"]})
    assert "gateway.public_key" in _error({"mqtt": GOOD["mqtt"]})


def test_types_ranges_and_typos_are_refused():
    bad_port = {"mqtt": {"host": "h", "password": "p", "port": "1883"}, "gateway": GOOD["gateway"]}
    assert "mqtt.port" in _error(bad_port)
    assert "unknown key mqtt.hots" in _error(
        {"mqtt": {"hots": "h", "host": "h", "password": "p"}, "gateway": GOOD["gateway"]}
    )
    assert "unknown section" in _error(dict(GOOD, mqqt={}))
    assert "bundling.readings" in _error(dict(GOOD, bundling={"readings": 33}))
    assert "64 hex" in _error({"mqtt": GOOD["mqtt"], "gateway": {"public_key": "zz" * 32}})
    assert "must be a number" in _error(dict(GOOD, sampling={"interval_s": True}))


def test_not_an_object():
    assert "JSON object" in _error([1, 2])
