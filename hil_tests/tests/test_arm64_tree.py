"""The arm64 harness's host-side decisions (`make hil-arm64` itself runs the tree, in `make test-long`):
which Debian mirror the tree comes from, when a kept tree must be rebuilt, and that a second run
leaves a tree in use alone."""

from __future__ import annotations

import json

import pytest

from pinseal_devkit import runlock
from pinseal_hil.arm64 import __main__ as hil_arm64
from pinseal_hil.arm64 import debian_tree


@pytest.fixture
def sources(tmp_path, monkeypatch):
    deb822, one_line = tmp_path / "debian.sources", tmp_path / "sources.list"
    monkeypatch.setattr(debian_tree, "APT_SOURCES", (deb822, one_line))
    monkeypatch.delenv(debian_tree.MIRROR_ENV, raising=False)
    return deb822, one_line


def test_the_mirror_is_the_one_apt_uses_in_deb822_form(sources) -> None:
    deb822, _ = sources
    deb822.write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    assert debian_tree.host_mirror() == "http://mirror.example/debian"


def test_the_mirror_is_the_one_apt_uses_in_one_line_form(sources) -> None:
    _, one_line = sources
    one_line.write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main\n"
    )
    assert debian_tree.host_mirror() == "http://mirror.example/debian/"


def test_no_apt_sources_falls_back_and_the_environment_overrides(sources, monkeypatch) -> None:
    assert debian_tree.host_mirror() == debian_tree.FALLBACK_MIRROR
    monkeypatch.setenv(debian_tree.MIRROR_ENV, "http://local.example/debian")
    assert debian_tree.host_mirror() == "http://local.example/debian"


def test_a_tree_is_reused_only_while_its_recipe_holds(tmp_path) -> None:
    mirror = "http://mirror.example/debian"
    assert not debian_tree.is_current(tmp_path, mirror)  # never built
    (tmp_path / debian_tree.STAMP).write_text(json.dumps(debian_tree.recipe(mirror)))
    assert debian_tree.is_current(tmp_path, mirror)
    assert not debian_tree.is_current(tmp_path, "http://other.example/debian")
    (tmp_path / debian_tree.STAMP).write_text("{half written")
    assert not debian_tree.is_current(tmp_path, mirror)


def test_a_second_run_on_a_tree_in_use_is_refused_and_touches_nothing(tmp_path, capsys) -> None:
    tree = tmp_path / "arm64" / "bookworm"
    held = runlock.lock_state_folder(tree.parent, "make hil-arm64")
    try:
        assert hil_arm64.main(["--tree", str(tree), "--results", str(tmp_path / "results")]) == 2
    finally:
        held.close()
    err = capsys.readouterr().err
    assert "in use by another make hil-arm64" in err and "--tree" in err
    assert not tree.exists() and not (tmp_path / "results").exists()
