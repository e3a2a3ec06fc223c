# The board profile (boards/<id>/board.json), copied to the board's flash as /board.json by provisioning:
# which sensors are wired where, the battery divider, the power source. The firmware reads it instead of
# knowing boards, so one firmware serves every supported board.
import json

PROFILE_PATH = "/board.json"


def load(path=PROFILE_PATH):
    """The profile, or a minimal one (no sensors) when the file is missing."""
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return {"id": "unknown", "sensors": [], "battery": None, "power": {"deepsleep": False}}
