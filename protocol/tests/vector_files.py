"""Where the protocol tests find the normative vectors (a plain module: conftest names clash)."""

import json
from pathlib import Path
from typing import Any

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors"
THIRD_PARTY = VECTORS_DIR / "third_party"


def load_vectors() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(VECTORS_DIR.glob("*.json"))}
