"""protocol/vectors/serial_frames.json against the host's serial framing (the device's side runs in the VM:
hil_tests/firmware_tests/test_serial_frames.py), COBS against the `cobs` package, and the file is exactly
what its generator makes."""

import json
from pathlib import Path

import pytest
from cobs import cobs
from vector_files import VECTORS_DIR

from pinseal_devkit.vectors import serial_frame_cases
from pinseal_protocol import serial_frames as sf

VECTORS = json.loads((VECTORS_DIR / serial_frame_cases.FILE_NAME).read_text())


def events(raw: bytes) -> list[dict]:
    """What a reader fed `raw` in one piece returns, in the file's terms."""
    out = []
    for event in sf.FrameReader().feed(raw):
        if isinstance(event, sf.Frame):
            out.append({"frame": {"kind": event.kind, "payload": event.payload.hex()}})
        else:
            out.append({"dropped": event.reason})
    return out


def test_file_is_what_the_generator_makes(tmp_path: Path) -> None:
    assert serial_frame_cases.serial_frame_vectors() == VECTORS, "run `make vectors` (and review the diff)"
    assert serial_frame_cases.main([str(tmp_path)], echo=lambda _line: None) == 0
    written = (tmp_path / serial_frame_cases.FILE_NAME).read_bytes()
    assert written == (VECTORS_DIR / serial_frame_cases.FILE_NAME).read_bytes()
    assert serial_frame_cases.main([], echo=lambda _line: None) == 2


def test_every_drop_reason_has_a_stream() -> None:
    reasons = {e["dropped"] for s in VECTORS["streams"] for e in s["events"] if "dropped" in e}
    assert reasons == set(sf.DROP_REASONS)
    assert VECTORS["version"] == sf.VERSION and VECTORS["max_payload"] == sf.MAX_PAYLOAD


@pytest.mark.parametrize("vector", VECTORS["cobs"], ids=lambda v: v["data"][:16] or "empty")
def test_cobs_as_the_cobs_package_does_it(vector) -> None:
    data, encoded = bytes.fromhex(vector["data"]), bytes.fromhex(vector["hex"])
    assert cobs.encode(data) == encoded == sf.cobs_encode(data)
    assert cobs.decode(encoded) == data == sf.cobs_decode(encoded)
    assert b"\x00" not in encoded


@pytest.mark.parametrize("vector", VECTORS["frames"], ids=lambda v: f"{v['kind']}-{len(v['payload']) // 2}")
def test_frame(vector) -> None:
    raw, payload = bytes.fromhex(vector["hex"]), bytes.fromhex(vector["payload"])
    assert sf.encode(vector["kind"], payload) == raw
    assert raw.endswith(b"\x00") and raw.count(0) == 1
    assert sf.decode(raw[:-1]) == sf.Frame(vector["kind"], payload)
    assert events(raw) == [{"frame": {"kind": vector["kind"], "payload": vector["payload"]}}]
    assert len(raw) <= sf.MAX_FRAME


@pytest.mark.parametrize("vector", VECTORS["streams"], ids=lambda v: v["defect"])
def test_stream(vector) -> None:
    assert events(bytes.fromhex(vector["hex"])) == vector["events"]


def test_encode_refuses_what_no_reader_takes() -> None:
    with pytest.raises(ValueError, match="unknown frame kind"):
        sf.encode(4, b"")
    with pytest.raises(ValueError, match="over 4096"):
        sf.encode(sf.KIND_BUNDLE, bytes(sf.MAX_PAYLOAD + 1))
