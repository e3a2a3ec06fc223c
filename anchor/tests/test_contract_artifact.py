"""The committed PinsealAnchor.json is what the pinned solc (node_modules, offline) makes of the source."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from pinseal_anchor import evm
from pinseal_devkit.hardhat import ROOT

pytestmark = pytest.mark.timeout(120)

CONTRACT_DIR = ROOT / "anchor" / "pinseal_anchor" / "contract"


def test_artifact_matches_a_fresh_compile() -> None:
    if not (ROOT / "node_modules" / "solc").exists():
        pytest.fail("node_modules/solc missing: run `make setup` (npm ci)")
    fresh = subprocess.run(
        ["node", str(ROOT / "anchor" / "hardhat" / "compile-anchor.cjs")],
        check=True,
        capture_output=True,
        text=True,
        timeout=100,
    )
    committed = json.loads((CONTRACT_DIR / "PinsealAnchor.json").read_text())
    assert json.loads(fresh.stdout) == committed, "stale artifact: run `make anchor-contract`"


def test_artifact_names_its_source_and_compiler() -> None:
    art = evm.artifact()
    source = (CONTRACT_DIR / "PinsealAnchor.sol").read_bytes()
    assert art["sourceSha256"] == hashlib.sha256(source).hexdigest()
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["solc"]
    assert art["solcVersion"].startswith(pinned + "+")
    assert f"pragma solidity {pinned};".encode() in source
    names = {(e["type"], e["name"]) for e in art["abi"]}
    assert names == {("function", "anchor"), ("event", "Anchored")}
    # the dispatcher compares against anchor(bytes32)'s selector, and the event against Anchored's topic
    assert evm.ANCHOR_SELECTOR.hex() in art["deployedBytecode"]
    assert evm.ANCHORED_TOPIC.hex() in art["deployedBytecode"]
