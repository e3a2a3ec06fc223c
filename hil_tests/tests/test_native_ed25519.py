"""The native Ed25519 module (firmware/native) on MicroPython's unix port, against the pure-Python path.

The unix port built with the module (`make native-unix`, firmware/native/README.md) runs
hil_tests/firmware_tests/native_vectors.py: RFC 8032 section 7.1 and all of Wycheproof's Ed25519 tests on
both paths in one interpreter, SHA-512 against the pure one, the wrapper's API against the pure module's, and
that the selector loads only the native path. CI has neither the MicroPython sources nor a compiler run for
this, so without the binary these tests skip and say how to build it; the stock-MicroPython fallback is
tested in the VM (firmware_tests/test_crypto_backend.py) everywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pinseal_build.locations import BUILD_DIR, FIRMWARE_DIR
from pinseal_vboard.vm import FIRMWARE_TESTS_DIR, VECTORS_DIR

# Where `make native-unix` puts the unix port with the module; PINSEAL_NATIVE_MICROPYTHON overrides it.
NATIVE_MICROPYTHON = Path(os.environ.get("PINSEAL_NATIVE_MICROPYTHON", BUILD_DIR / "native" / "micropython"))
WYCHEPROOF = VECTORS_DIR / "third_party" / "wycheproof" / "ed25519_test.json"
RUN_TIMEOUT_S = 300

pytestmark = [
    pytest.mark.native,
    pytest.mark.skipif(
        not NATIVE_MICROPYTHON.is_file(),
        reason=f"no unix MicroPython with _pinseal_ed25519 at {NATIVE_MICROPYTHON}: build it with "
        "`make native-unix` (needs the pinned snapshots, see firmware/native/README.md)",
    ),
]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """One run of native_vectors.py; its verdicts for every test below."""
    env = {
        **os.environ,
        # .frozen first: the port's frozen asyncio; then the firmware as on a board, and the VM tests'
        # RFC 8032 vectors (test_ed25519.py), so there is one copy of them.
        "MICROPYPATH": f".frozen:{FIRMWARE_DIR}:{FIRMWARE_TESTS_DIR}",
    }
    proc = subprocess.run(
        [str(NATIVE_MICROPYTHON), str(FIRMWARE_TESTS_DIR / "native_vectors.py"), str(WYCHEPROOF)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=env,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("native_vectors: ")]
    assert proc.returncode == 0 and lines, f"rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(lines[-1].split(": ", 1)[1])
    print("native vs pure on the unix port:", result["timing_native"], result["timing_pure"])
    return result


def test_selector_takes_the_native_module_and_never_loads_the_pure_signer(report: dict[str, Any]) -> None:
    assert report["native"] is True
    for loaded in (report["selector_loaded"], report["after_sign_loaded"]):
        assert "pinseal.crypto.ed25519_native" in loaded, loaded
        assert "pinseal.crypto.ed25519" not in loaded and "pinseal.crypto.sha512" not in loaded, loaded


@pytest.mark.parametrize("path", ["native", "pure"])
def test_rfc8032_vectors(report: dict[str, Any], path: str) -> None:
    result = report[f"rfc8032_{path}"]
    assert result["cases"] == 5 and result["wrong"] == [], result


@pytest.mark.parametrize("path", ["native", "pure"])
def test_wycheproof_all_151(report: dict[str, Any], path: str) -> None:
    result = report[f"wycheproof_{path}"]
    assert result["cases"] == result["declared"] == 151, result
    assert result["wrong"] == [], result


def test_both_paths_give_the_same_verdict_on_every_wycheproof_case(report: dict[str, Any]) -> None:
    assert report["paths_disagree"] == []


def test_both_paths_agree_on_100_seeded_keys_messages_and_forgeries(report: dict[str, Any]) -> None:
    assert report["random"]["cases"] == 100 and report["random"]["wrong"] == [], report["random"]


def test_native_sha512_matches_the_pure_one(report: dict[str, Any]) -> None:
    assert report["sha512_wrong"] == []


def test_native_wrapper_keeps_the_pure_api(report: dict[str, Any]) -> None:
    assert report["api_wrong"] == []


def test_native_is_faster(report: dict[str, Any]) -> None:
    native, pure = report["timing_native"], report["timing_pure"]
    assert native["sign_ms"] < pure["sign_ms"] and native["verify_ms"] < pure["verify_ms"], (native, pure)
