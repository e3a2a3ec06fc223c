"""protocol/vectors/ble_link.json against the host's BLE link codec (pinseal_protocol.ble_link), and the
file is exactly what its generator makes. The firmware's codec is to be held to the same file."""

import json
from pathlib import Path

import pytest
from vector_files import VECTORS_DIR

from pinseal_devkit.vectors import ble_link_cases
from pinseal_protocol import ble_link as bl

VECTORS = json.loads((VECTORS_DIR / ble_link_cases.FILE_NAME).read_text())


def test_file_is_what_the_generator_makes(tmp_path: Path) -> None:
    assert ble_link_cases.ble_link_vectors() == VECTORS, "run `make vectors` (and review the diff)"
    assert ble_link_cases.main([str(tmp_path)], echo=lambda _line: None) == 0
    written = (tmp_path / ble_link_cases.FILE_NAME).read_bytes()
    assert written == (VECTORS_DIR / ble_link_cases.FILE_NAME).read_bytes()
    assert ble_link_cases.main([], echo=lambda _line: None) == 2


def test_uuids_and_advertising_sizes() -> None:
    assert VECTORS["uuids"] == {
        "service": bl.SERVICE_UUID,
        "info": bl.INFO_UUID,
        "bundles": bl.BUNDLES_UUID,
        "down": bl.DOWN_UUID,
    }
    first = VECTORS["advertising"][0]
    assert len(bytes.fromhex(first["adv"])) == 21 and len(bytes.fromhex(first["scan_rsp"])) == 26
    assert bytes.fromhex(first["adv"]) == bl.advertisement()
    assert bytes.fromhex(first["scan_rsp"]) == bl.scan_response(bytes.fromhex(VECTORS["info"]["kid"]))


@pytest.mark.parametrize("case", VECTORS["advertising"], ids=lambda c: c["case"])
def test_advertising_parses(case) -> None:
    found = bl.parse_advertising(bytes.fromhex(case["adv"]), bytes.fromhex(case["scan_rsp"]))
    assert found.has_service == case["has_service"]
    assert (found.kid_prefix.hex() if found.kid_prefix else None) == case["kid_prefix"]


@pytest.mark.parametrize("case", VECTORS["advertising_errors"], ids=lambda c: c["case"])
def test_bad_advertising_is_a_clear_error(case) -> None:
    with pytest.raises(bl.BleLinkError):
        bl.parse_advertising(bytes.fromhex(case["adv"]), bytes.fromhex(case["scan_rsp"]))


def test_info_round_trip() -> None:
    info = VECTORS["info"]
    decoded = bl.decode_info(bytes.fromhex(info["hex"]))
    assert decoded == bl.Info(
        bytes.fromhex(info["kid"]), info["firmware"], info["board"], info["outbox_depth"]
    )
    assert decoded.encode().hex() == info["hex"]


@pytest.mark.parametrize("case", VECTORS["info_errors"], ids=lambda c: c["case"])
def test_bad_info_is_a_clear_error(case) -> None:
    with pytest.raises(bl.BleLinkError):
        bl.decode_info(bytes.fromhex(case["hex"]))


@pytest.mark.parametrize("case", VECTORS["chunking"], ids=lambda c: f"mtu{c['mtu']}")
def test_chunking(case) -> None:
    bundle = bytes.fromhex(case["bundle"])
    raw = [bytes.fromhex(c) for c in case["chunks"]]
    assert bl.chunks(case["transfer"], bundle, case["mtu"]) == raw
    assert all(len(c) <= case["mtu"] - bl.ATT_HEADER for c in raw)
    parsed = [bl.parse_chunk(c) for c in raw]
    assert b"".join(p.data for p in parsed) == bundle
    assert [p.index for p in parsed] == list(range(len(raw))) and {p.last for p in parsed} == {len(raw) - 1}


def test_the_largest_bundle_fits_256_chunks_at_the_default_mtu() -> None:
    assert len(bl.chunks(0, b"\x01" * bl.MAX_BUNDLE)) == 241
    with pytest.raises(bl.BleLinkError):
        bl.chunks(0, b"\x01" * (bl.MAX_BUNDLE + 1))
    with pytest.raises(bl.BleLinkError):
        bl.chunks(0, b"")


@pytest.mark.parametrize("case", VECTORS["chunk_errors"], ids=lambda c: c["case"])
def test_bad_chunk_is_a_clear_error(case) -> None:
    with pytest.raises(bl.BleLinkError):
        bl.parse_chunk(bytes.fromhex(case["hex"]))


@pytest.mark.parametrize("case", VECTORS["down"], ids=lambda c: c["case"])
def test_down_round_trip(case) -> None:
    raw = bytes.fromhex(case["hex"])
    assert bl.encode_down(bl.decode_down(raw)) == raw


@pytest.mark.parametrize("case", VECTORS["down_errors"], ids=lambda c: c["case"])
def test_bad_down_is_a_clear_error(case) -> None:
    with pytest.raises(bl.BleLinkError):
        bl.decode_down(bytes.fromhex(case["hex"]))


@pytest.mark.parametrize("case", VECTORS["reassembly"], ids=lambda c: c["case"])
def test_reassembly_streams(case) -> None:
    r = bl.Reassembler()
    for raw, expected in zip(case["chunks"], case["events"], strict=True):
        assert ble_link_cases.event(r.feed(bl.parse_chunk(bytes.fromhex(raw)))) == expected
    assert sum("bundle" in e for e in case["events"]) == 1
