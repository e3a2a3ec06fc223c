"""protocol/vectors/mqtt_frames.json against the host's framing module (the device's side runs in the VM:
hil_tests/firmware_tests/test_mqtt_packets.py), and the file is exactly what its generator makes."""

import json
from pathlib import Path

import pytest
from vector_files import VECTORS_DIR

from pinseal_devkit.vectors import mqtt_frame_cases as mqtt_frame_vectors
from pinseal_protocol import mqtt_frames as mf

VECTORS = json.loads((VECTORS_DIR / mqtt_frame_vectors.FILE_NAME).read_text())


def test_file_is_what_the_generator_makes(tmp_path: Path) -> None:
    assert mqtt_frame_vectors.mqtt_frame_vectors() == VECTORS, "run `make vectors` (and review the diff)"
    assert mqtt_frame_vectors.main([str(tmp_path)], echo=lambda _line: None) == 0
    written = (tmp_path / mqtt_frame_vectors.FILE_NAME).read_bytes()
    assert written == (VECTORS_DIR / mqtt_frame_vectors.FILE_NAME).read_bytes()
    assert mqtt_frame_vectors.main([], echo=lambda _line: None) == 2


def test_every_section_has_cases() -> None:
    sections = ("remaining_length", "remaining_length_malformed", "publish", "puback", "connect", "subscribe")
    assert all(VECTORS[s] for s in (*sections, "received", "received_malformed"))
    assert {len(v["hex"]) // 2 for v in VECTORS["remaining_length"]} == {1, 2, 3, 4}


@pytest.mark.parametrize("vector", VECTORS["remaining_length"], ids=lambda v: str(v["value"]))
def test_remaining_length(vector) -> None:
    encoded = bytes.fromhex(vector["hex"])
    assert mf.encode_remaining_length(vector["value"]) == encoded
    assert mf.decode_remaining_length(b"\x30" + encoded, 1) == (vector["value"], 1 + len(encoded))


@pytest.mark.parametrize("vector", VECTORS["remaining_length_malformed"], ids=lambda v: v["hex"])
def test_malformed_remaining_length(vector) -> None:
    with pytest.raises(mf.FrameError):
        mf.split_frames(bytes.fromhex(vector["hex"]))


@pytest.mark.parametrize("vector", VECTORS["publish"], ids=lambda v: v["hex"][:12])
def test_publish(vector) -> None:
    raw = bytes.fromhex(vector["hex"])
    payload = bytes.fromhex(vector["payload"])
    fields = (vector["topic"], payload, vector["qos"], vector["packet_id"], vector["dup"], vector["retain"])
    assert mf.publish(*fields) == raw
    assert mf.decode(raw) == mf.Publish(vector["topic"].encode(), *fields[1:])


def test_puback_connect_subscribe_ping_disconnect() -> None:
    for v in VECTORS["puback"]:
        assert mf.puback(v["packet_id"]).hex() == v["hex"]
        assert mf.decode(bytes.fromhex(v["hex"])) == mf.Puback(v["packet_id"])
    for v in VECTORS["connect"]:
        got = mf.connect(v["client_id"], v["username"], v["password"], v["keepalive_s"], v["clean_session"])
        assert got.hex() == v["hex"]
    for v in VECTORS["subscribe"]:
        assert mf.subscribe(v["packet_id"], v["topic_filter"], v["qos"]).hex() == v["hex"]
    assert mf.PINGREQ_PACKET.hex() == VECTORS["pingreq"]
    assert mf.DISCONNECT_PACKET.hex() == VECTORS["disconnect"]


def _fields(packet: mf.Received) -> dict[str, object]:
    kind = type(packet).__name__.lower()
    return {"type": kind, **{k: v for k, v in vars(packet).items()}}


@pytest.mark.parametrize("vector", VECTORS["received"], ids=lambda v: v["hex"])
def test_received(vector) -> None:
    assert _fields(mf.decode(bytes.fromhex(vector["hex"]))) == vector["packet"]


@pytest.mark.parametrize("vector", VECTORS["received_malformed"], ids=lambda v: v["defect"])
def test_received_malformed(vector) -> None:
    with pytest.raises(mf.FrameError):
        mf.decode(bytes.fromhex(vector["hex"]))
