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


def test_links_are_named_in_order_and_checked():
    cfg = config.merge(GOOD)
    assert cfg["link"]["transports"] == ["mqtt"] and cfg["serial"]["uart"] == -1
    both = config.merge(dict(GOOD, link={"transports": ["serial", "mqtt"], "retry_s": 60}))
    assert both["link"]["transports"] == ["serial", "mqtt"] and both["link"]["retry_s"] == 60
    assert "link.transports" in _error(dict(GOOD, link={"transports": ["carrier-pigeon"]}))
    assert "link.transports" in _error(dict(GOOD, link={"transports": ["mqtt", "mqtt"]}))
    assert "link.transports" in _error(dict(GOOD, link={"transports": []}))
    assert "link.transports" in _error(dict(GOOD, link={"transports": [{"x": 1}]}))
    assert "link.transports must be list" in _error(dict(GOOD, link={"transports": "mqtt"}))
    assert "link.retry_s" in _error(dict(GOOD, link={"retry_s": 0}))
    assert "serial.baudrate" in _error(dict(GOOD, serial={"baudrate": 0}))


def test_a_serial_only_board_needs_no_broker():
    cfg = config.merge({"gateway": GOOD["gateway"], "link": {"transports": ["serial"]}})
    assert cfg["mqtt"]["host"] is None
    # a broker listed among the links needs its host and password again
    error = _error({"gateway": GOOD["gateway"], "link": {"transports": ["serial", "mqtt"]}})
    assert "mqtt." in error and "is required" in error, error
