"""pinseal_build.fetch_ed25519_ref: only the pinned sdist's bytes are ever built from, and only the files the
native module compiles are extracted. No network: sdists are made here (the real one is used only when a
developer has it in build/native/, e.g. after `make native-unix`)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from pinseal_build import fetch_ed25519_ref as fetch


def _sdist(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_an_sdist_with_other_bytes_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    files = {fetch.REF_PREFIX + name: b"/* not the pinned code */\n" for name in fetch.REF_FILES}
    sdist = _sdist(tmp_path / fetch.SDIST_NAME, files)
    dest = tmp_path / "ref"
    with pytest.raises(SystemExit, match="expected " + fetch.SDIST_SHA256):
        fetch.extract(sdist, dest)
    assert not dest.exists()


def test_the_module_sources_are_named_in_both_build_files() -> None:
    # micropython.mk and micropython.cmake compile the same ref files, all of which the script extracts
    module_dir = Path(fetch.__file__).resolve().parents[2] / "firmware" / "native" / "pinseal_ed25519"
    mk = (module_dir / "micropython.mk").read_text()
    cmake = (module_dir / "micropython.cmake").read_text()
    compiled = [name for name in fetch.REF_FILES if name.endswith(".c")]
    assert compiled == ["fe25519.c", "ge25519.c", "sc25519.c", "sha512-blocks.c"]
    for name in compiled:
        assert name in mk and f"${{PINSEAL_ED25519_REF_DIR}}/{name}" in cmake, name
    assert "ed25519.c " not in mk.replace(
        "pinseal_ed25519.c", ""
    )  # ref's message-copying signer is not built


REAL_SDIST = fetch.CACHED_SDIST


@pytest.mark.skipif(not REAL_SDIST.is_file(), reason=f"no {REAL_SDIST} (a developer's copy; CI has none)")
def test_the_real_sdist_gives_exactly_the_listed_files(tmp_path: Path) -> None:
    written = fetch.extract(REAL_SDIST, tmp_path)
    assert sorted(p.name for p in written) == sorted(fetch.REF_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*fetch.REF_FILES, "PROVENANCE"])
