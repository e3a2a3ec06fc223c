"""Extract the pinned MicroPython sources from bare git snapshots into build/sources/ (firmware-images).

The images are built from exact commits (micropython/builds/pins.json), never from a network clone: CI and
most developer machines cannot reach GitHub, and a moving branch would make the committed images
unreproducible. A snapshot is a bare repository; its submodules are separate snapshots, extracted at the
commit MicroPython's tree pins (checked here, so pins.json cannot drift from the superproject).

Extraction is file by file (`git ls-tree` + `git cat-file --batch`), not `git archive`: a snapshot may list a
very large blob without holding it, and `git archive` then stops at that blob and leaves a silently truncated
tree. Missing blobs are skipped and reported (pico-sdk 2.2.0 lacks only RP2350.svd; nothing here needs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pinseal_build.locations import BUILD_DIR, CHECKOUT

PINS_PATH = CHECKOUT / "micropython" / "builds" / "pins.json"
SOURCES_DIR = BUILD_DIR / "sources"
DEFAULT_SNAPSHOTS = Path(os.environ.get("PINSEAL_SNAPSHOTS", "/work/.mirror"))
GIT_TIMEOUT_S = 600


@dataclass
class Extracted:
    """What one extraction wrote: the file count and the blobs the snapshot listed but did not hold."""

    files: int = 0
    missing: list[str] = field(default_factory=list)


def load_pins(path: Path = PINS_PATH) -> dict:
    """The pins file, parsed."""
    return json.loads(path.read_text())


def snapshot_dir(snapshots: Path, repo: str) -> Path:
    """A repository's bare snapshot: `<snapshots>/<owner>+<name>/repo` (the layout `fetch` leaves)."""
    return snapshots / repo.replace("/", "+") / "repo"


def _git(git_dir: Path, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_S,
    ).stdout


def submodule_commit(git_dir: Path, commit: str, path: str) -> str:
    """The commit the superproject's tree pins at `path` (a gitlink), to check pins.json against."""
    line = _git(git_dir, "ls-tree", commit, path).strip()
    _mode, kind, sha = line.split("\t")[0].split()
    if kind != "commit":
        raise ValueError(f"{path} at {commit[:10]} is a {kind}, not a submodule")
    return sha


def extract(git_dir: Path, commit: str, dest: Path) -> Extracted:
    """Write every file of `commit` under `dest` (cleared first), file by file, skipping absent blobs.

    A stamp file records the commit, so a second build with the same pin reuses the tree (the extraction of
    pico-sdk and TinyUSB is most of a cold build's I/O).
    """
    stamp = dest / ".pinseal-extracted"
    if stamp.is_file() and stamp.read_text().strip() == commit:
        return Extracted()
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    listing = subprocess.run(
        ["git", f"--git-dir={git_dir}", "ls-tree", "-r", "-z", "--full-tree", commit],
        check=True,
        capture_output=True,
        timeout=GIT_TIMEOUT_S,
    ).stdout
    entries: list[tuple[str, str, str]] = []
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, name = record.split(b"\t", 1)
        mode, kind, sha = meta.decode().split()
        if kind == "blob":  # gitlinks (nested submodules) are extracted from their own snapshots, if needed
            entries.append((mode, sha, name.decode()))
    result = Extracted()
    with subprocess.Popen(
        ["git", f"--git-dir={git_dir}", "cat-file", "--batch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        for mode, sha, name in entries:
            proc.stdin.write(sha.encode() + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) < 3 or header[1] == b"missing":
                result.missing.append(name)
                continue
            data = proc.stdout.read(int(header[2]))
            proc.stdout.read(1)  # the newline after each object
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if mode == "120000":
                target.symlink_to(data.decode())
            else:
                target.write_bytes(data)
                if mode == "100755":
                    target.chmod(0o755)
            result.files += 1
        proc.stdin.close()
        proc.wait(timeout=GIT_TIMEOUT_S)
    stamp.write_text(commit + "\n")
    return result


def extract_all(pins: dict, snapshots: Path, sources: Path, wanted: set[str]) -> dict[str, Path]:
    """Extract MicroPython, the submodules the `wanted` images need, and the tools; return their folders.

    Fails before any build if a snapshot is absent or a submodule pin disagrees with MicroPython's tree.
    """
    mp = pins["micropython"]
    mp_git = snapshot_dir(snapshots, mp["repo"])
    if not mp_git.is_dir():
        raise FileNotFoundError(f"no snapshot of {mp['repo']} at {mp_git} (fetch github:{mp['repo']})")
    mp_dir = sources / mp["dest"]
    report = extract(mp_git, mp["commit"], mp_dir)
    _say(mp["repo"], mp["commit"], report)
    dirs = {"micropython": mp_dir}
    for sub in pins["submodules"]:
        if not wanted & set(sub["needed_by"]):
            continue
        pinned = submodule_commit(mp_git, mp["commit"], sub["path"])
        if pinned != sub["commit"]:
            raise ValueError(f"pins.json has {sub['path']} at {sub['commit']}, MicroPython pins {pinned}")
        git_dir = snapshot_dir(snapshots, sub["repo"])
        if not git_dir.is_dir():
            raise FileNotFoundError(f"no snapshot of {sub['repo']} at {git_dir} (fetch github:{sub['repo']})")
        report = extract(git_dir, sub["commit"], mp_dir / sub["path"])
        _say(sub["repo"], sub["commit"], report)
    # Tools (built for the host) and libraries (third-party C our user C modules compile, e.g. Monocypher) are
    # extracted the same way, each into build/sources/<dest>.
    for entry in [*pins["tools"], *pins.get("libraries", [])]:
        if not wanted & set(entry["needed_by"]):
            continue
        git_dir = snapshot_dir(snapshots, entry["repo"])
        if not git_dir.is_dir():
            raise FileNotFoundError(
                f"no snapshot of {entry['repo']} at {git_dir} (fetch github:{entry['repo']})"
            )
        report = extract(git_dir, entry["commit"], sources / entry["dest"])
        _say(entry["repo"], entry["commit"], report)
        dirs[entry["name"]] = sources / entry["dest"]
    return dirs


def _say(repo: str, commit: str, report: Extracted) -> None:
    if report.files == 0 and not report.missing:
        print(f"sources: {repo} @ {commit[:10]}: already extracted")
        return
    print(f"sources: {repo} @ {commit[:10]}: {report.files} files", flush=True)
    for name in report.missing:
        print(f"sources:   (absent from the snapshot, skipped: {name})")


def main(argv: list[str] | None = None) -> int:
    """Extract without building: `make native-unix` takes the same tree the image build uses."""
    parser = argparse.ArgumentParser(description="extract the pinned sources into build/sources/")
    parser.add_argument(
        "--for", dest="wanted", nargs="+", required=True, help="what they are for (needed_by)"
    )
    parser.add_argument("--snapshots", type=Path, default=DEFAULT_SNAPSHOTS, help="bare git snapshots")
    args = parser.parse_args(argv)
    extract_all(load_pins(), args.snapshots, SOURCES_DIR, set(args.wanted))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
