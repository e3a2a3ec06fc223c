"""Fixtures of the anchoring tests: a Hardhat node shared by the module, or a private one for tests that
stop, pause or restart it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pinseal_devkit.hardhat import HardhatNode, running_node


def _node(log: Path) -> Iterator[HardhatNode]:
    with running_node(log) as node:
        yield node


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HardhatNode]:
    """A node shared by a module's tests (each test anchors from its own fresh key, so they do not meet)."""
    yield from _node(tmp_path_factory.mktemp("hardhat") / "node.log")


@pytest.fixture
def own_chain(tmp_path: Path) -> Iterator[HardhatNode]:
    """A node for one test alone (it will be paused, restarted or left without automine)."""
    yield from _node(tmp_path / "node.log")
