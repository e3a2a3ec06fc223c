"""Where the protocol tests find the normative vectors (a plain module: conftest names clash)."""

import json
from pathlib import Path
from typing import Any

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors"
THIRD_PARTY = VECTORS_DIR / "third_party"


def load_vectors() -> dict[str, dict[str, Any]]:
    """The bundle, ack and rejection vectors (mqtt_frames.json has a shape of its own:
    test_mqtt_frame_vectors.py)."""
    paths = [p for kind in ("bundle", "ack", "rejection") for p in VECTORS_DIR.glob(f"{kind}_*.json")]
    return {p.stem: json.loads(p.read_text()) for p in sorted(paths)}
