# pinseal.board: the firmware keeps only the parts of /board.json it reads (the rest is for host tools and
# would hold ~4 KB of heap for the whole run); a profile without an optional part reads as before.
import json
import os

from pinseal import board

PATH = "/t_board.json"


def _write(profile):
    with open(PATH, "w") as f:
        json.dump(profile, f)


def test_unused_parts_and_notes_are_dropped():
    _write(
        {
            "id": "b",
            "name": "a long board name",
            "usb": [{"vid": "10c4"}],
            "sensors": [{"type": "sht3x", "address": 68}],
            "battery": {"adc_pin": 35, "notes": "a long note"},
            "power": {"deepsleep": True, "notes": "another"},
            "ram": {"free_heap_bytes": 100000, "comb_subcombs": 1},
        }
    )
    try:
        p = board.load(PATH)
    finally:
        os.remove(PATH)
    assert p == {
        "id": "b",
        "sensors": [{"type": "sht3x", "address": 68}],
        "battery": {"adc_pin": 35},
        "power": {"deepsleep": True},
        "ram": {"free_heap_bytes": 100000, "comb_subcombs": 1},
    }, p


def test_a_missing_optional_part_stays_missing():
    # callers use profile.get("sensors", ()) and the like: a missing part must not become None
    _write({"id": "b", "power": {"deepsleep": False}})
    try:
        p = board.load(PATH)
    finally:
        os.remove(PATH)
    assert p == {"id": "b", "power": {"deepsleep": False}}, p
    assert p.get("sensors", ()) == ()


def test_no_file_gives_the_minimal_profile():
    p = board.load("/no_such_board.json")
    assert p["sensors"] == [] and p["power"] == {"deepsleep": False}
