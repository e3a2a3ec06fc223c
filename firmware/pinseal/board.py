# The board profile (boards/<id>/board.json), copied to the board's flash as /board.json by provisioning:
# which sensors are wired where, the battery divider, the power source. The firmware reads it instead of
# knowing boards, so one firmware serves every supported board.
import json

PROFILE_PATH = "/board.json"
# What the firmware reads of a profile. The rest (USB ids, image names, Wokwi parts, notes) is for the host
# tools: parsed whole, a profile holds ~4 KB of heap, which a 100 KB board cannot spare for the whole run.
_USED = ("id", "sensors", "i2c", "uart", "battery", "power", "ram")


def load(path=PROFILE_PATH):
    """The parts of the profile the firmware uses, or a minimal one (no sensors) when the file is missing."""
    try:
        with open(path) as f:
            profile = json.load(f)
    except OSError:
        return {"id": "unknown", "sensors": [], "battery": None, "power": {"deepsleep": False}}
    used = {}
    for key in _USED:
        if key in profile:  # a part the profile lacks stays missing: readers use .get(key, default)
            value = profile[key]
            if type(value) is dict:
                value = {k: v for k, v in value.items() if k != "notes"}
            used[key] = value
    return used
