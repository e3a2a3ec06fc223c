"""The committed MicroPython images match their manifests (issue 16): size, SHA-256, the pinned source
commits, and for the QEMU image the build inputs of ours it was made from, so a stale or hand-edited binary
fails here rather than in a slow emulator test. Fast: reads files only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "micropython" / "images"
PINS = json.loads((REPO / "micropython" / "builds" / "pins.json").read_text())
MANIFESTS = sorted(IMAGES.glob("*/manifest.json"))


def test_every_image_is_there() -> None:
    assert {m.parent.name for m in MANIFESTS} >= {"qemu-mps2-an385", "rp2-pico", "rp2040-bootrom"}


@pytest.mark.parametrize("manifest_path", MANIFESTS, ids=lambda p: p.parent.name)
def test_files_match_the_manifest(manifest_path: Path) -> None:
    manifest = json.loads(manifest_path.read_text())
    assert manifest["image"] == manifest_path.parent.name
    assert manifest["files"], "a manifest lists at least one file"
    for entry in manifest["files"]:
        data = (manifest_path.parent / entry["file"]).read_bytes()
        assert len(data) == entry["bytes"], entry["file"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]


@pytest.mark.parametrize(
    "manifest_path", [m for m in MANIFESTS if m.parent.name != "rp2040-bootrom"], ids=lambda p: p.parent.name
)
def test_sources_are_the_pins(manifest_path: Path) -> None:
    manifest = json.loads(manifest_path.read_text())
    sources = manifest["sources"]
    mp = PINS["micropython"]
    assert sources["micropython"] == {k: mp[k] for k in ("repo", "ref", "commit")}
    pinned = {s["path"]: s["commit"] for s in PINS["submodules"]}
    for sub in sources["submodules"]:
        assert pinned[sub["path"]] == sub["commit"], sub["path"]
    tools = {t["name"]: t["commit"] for t in PINS["tools"]}
    for tool in sources["tools"]:
        assert tools[tool["name"]] == tool["commit"], tool["name"]
    libraries = {lib["name"]: lib["commit"] for lib in PINS.get("libraries", [])}
    for lib in sources.get("libraries", []):
        assert libraries[lib["name"]] == lib["commit"], lib["name"]
    assert manifest["build_command"].startswith("make firmware-images")
    assert manifest["toolchain"]["arm-none-eabi-gcc"] != "absent"


def digest(folder: Path) -> dict[str, str]:
    """As pinseal_build.micropython_images.inputs_digest: SHA-256 per file (documentation aside), named from
    the checkout."""
    return {
        p.relative_to(REPO).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".md"
    }


def test_qemu_image_was_built_from_the_current_board_files() -> None:
    manifest = json.loads((IMAGES / "qemu-mps2-an385" / "manifest.json").read_text())
    current = digest(REPO / "micropython" / "builds" / "qemu-mps2-an385")
    assert manifest["inputs"] == current, (
        "micropython/builds/qemu-mps2-an385 changed: run make firmware-images"
    )
    profile = json.loads((REPO / "boards" / "esp32_devkitc" / "board.json").read_text())
    assert manifest["micropython_heap_size"] >= profile["ram"]["free_heap_bytes"]


@pytest.mark.parametrize("image", ["qemu-mps2-an385", "rp2-pico"])
def test_user_c_modules_are_current(image: str) -> None:
    """An image built with a user C module (firmware/native by default) records the module's files; a
    change to them without a rebuild leaves the committed binary running old native code."""
    manifest = json.loads((IMAGES / image / "manifest.json").read_text())
    folder = manifest.get("user_c_modules")
    if folder is None:
        assert "user_c_modules_inputs" not in manifest
        return
    assert manifest["user_c_modules_inputs"] == digest(REPO / folder), (
        f"{folder} changed: make firmware-images"
    )


@pytest.mark.parametrize("image", ["qemu-mps2-an385", "rp2-pico"])
def test_images_carry_the_native_ed25519_module(image: str) -> None:
    """Both images are built with firmware/native (issue 16), over the pinned Monocypher: the firmware's
    crypto backend finds _pinseal_ed25519 there. The QEMU tests prove it runs; this says what was built."""
    manifest = json.loads((IMAGES / image / "manifest.json").read_text())
    assert manifest["user_c_modules"] == "firmware/native"
    assert manifest["native_modules"] == ["_pinseal_ed25519"]
    pin = next(lib for lib in PINS["libraries"] if lib["name"] == "monocypher")
    assert [lib["commit"] for lib in manifest["sources"]["libraries"]] == [pin["commit"]]


def test_bootrom_provenance() -> None:
    manifest = json.loads((IMAGES / "rp2040-bootrom" / "manifest.json").read_text())
    pin = PINS["bootrom"]
    assert manifest["source"] == {"repo": pin["repo"], "commit": pin["commit"], "path": pin["path"]}
    assert manifest["files"][0]["bytes"] == 16384
    for name in manifest["licences"]:
        assert (IMAGES / "rp2040-bootrom" / name).stat().st_size > 0
    data = (IMAGES / "rp2040-bootrom" / "bootrom_b1.bin").read_bytes()
    assert int.from_bytes(data[:4], "little") == 0x20041F00  # the B1 ROM's initial stack pointer
