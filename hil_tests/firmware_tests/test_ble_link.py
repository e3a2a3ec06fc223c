# pinseal.transport.ble_link in the MicroPython VM, held to protocol/vectors/ble_link.json (the host codec
# pinseal_protocol.ble_link wrote it): the advertisement and scan response byte for byte, the info map,
# bundles cut into notifications at two MTUs, the gateway's down writes, and every bad down write refused.
# Run by hil_tests/tests/test_firmware_in_vm.py, as every module here.
import json

from pinseal.transport import ble_link as bl

with open("/vectors/ble_link.json") as f:
    VECTORS = json.load(f)


def test_uuids_match_the_file():
    u = VECTORS["uuids"]
    assert (u["service"], u["info"], u["bundles"], u["down"]) == (
        bl.SERVICE_UUID,
        bl.INFO_UUID,
        bl.BUNDLES_UUID,
        bl.DOWN_UUID,
    )


def test_advertising_payloads_byte_for_byte_and_within_legacy_limits():
    v = VECTORS["advertising"][0]
    assert bl.advertisement().hex() == v["adv"]
    kid = bytes.fromhex(VECTORS["info"]["kid"])
    assert kid[:8].hex() == v["kid_prefix"]
    assert bl.scan_response(kid).hex() == v["scan_rsp"]
    assert len(bl.advertisement()) == 21 and len(bl.scan_response(kid)) == 26


def test_info_map_is_the_hosts_deterministic_cbor():
    v = VECTORS["info"]
    got = bl.info(bytes.fromhex(v["kid"]), v["firmware"], v["board"], v["outbox_depth"])
    assert got.hex() == v["hex"]


def test_bundles_cut_into_the_same_notifications():
    for v in VECTORS["chunking"]:
        bundle = bytes.fromhex(v["bundle"])
        n = bl.chunk_count(len(bundle), v["mtu"])
        got = [bl.chunk(v["transfer"], bundle, v["mtu"], i).hex() for i in range(n)]
        assert got == v["chunks"], v["mtu"]
        assert all(len(bytes.fromhex(c)) <= v["mtu"] - 3 for c in got)


def test_down_writes_decoded():
    kinds = []
    for v in VECTORS["down"]:
        kind, value = bl.decode_down(bytes.fromhex(v["hex"]))
        kinds.append(kind)
        if kind == bl.DOWN_ACK:
            assert value == bytes.fromhex(v["hex"])[1:]
        elif kind == bl.DOWN_RESEND:
            assert value == (7, b"\x03\x09")
        elif kind == bl.DOWN_RECEIVED:
            assert value == 255
    assert kinds == [1, 2, 3, 4]


def test_bad_down_writes_are_refused():
    for v in VECTORS["down_errors"]:
        try:
            bl.decode_down(bytes.fromhex(v["hex"]))
        except ValueError:
            continue
        raise AssertionError("accepted: " + v["case"])
