"""Build pinseal's MicroPython images from pinned sources, with a manifest (`make firmware-images`).

    python -m pinseal_build.micropython_images [--only qemu-mps2-an385 rp2-pico] [-j N]
        [--snapshots DIR] [--user-c-modules DIR] [--out DIR]

Why committed images: CI has no network and no snapshots, yet the QEMU and rp2040js tests need real
MicroPython builds. So the build runs where the sources are (bare git snapshots, micropython_sources), and its
output lands in micropython/images/<image>/ with manifest.json (sizes, SHA-256, source commits, the command
and the toolchain versions); hil_tests/tests/test_firmware_images.py checks the manifest against the files.

Reproducibility: the version header is fixed (MICROPY_GIT_TAG/HASH from the pin, SOURCE_DATE_EPOCH = the
release commit's time), git cannot see the pinseal checkout around build/sources (GIT_CEILING_DIRECTORIES),
and build folders are cleared first, so a second run on the same toolchain gives the same bytes.

Images (no pinseal code in either: `pinseal-provision deploy` puts the firmware on them, as on a board):
- qemu-mps2-an385: ports/qemu for the MPS2-AN385 (Cortex-M3) with micropython/builds/qemu-mps2-an385/ (a
  small patch, a board folder): littlefs on a semihosting-backed host file, os.urandom from the host's
  /dev/urandom, asyncio, and the GC heap of the esp32_devkitc profile.
- rp2-pico: the stock RP2 port for RPI_PICO, with picotool 2.2.0 built from its pin first (the pico-sdk
  would otherwise clone it from the network).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pinseal_build import micropython_sources as sources
from pinseal_build.locations import BUILD_DIR, CHECKOUT

BUILDS_DIR = CHECKOUT / "micropython" / "builds"
IMAGES_DIR = CHECKOUT / "micropython" / "images"
SOURCES_DIR = sources.SOURCES_DIR
WORK_DIR = BUILD_DIR / "images"
IMAGES = ("qemu-mps2-an385", "rp2-pico")
HEAP_PROFILE = CHECKOUT / "boards" / "esp32_devkitc" / "board.json"
DEFAULT_USER_C_MODULES = CHECKOUT / "firmware" / "native"
STEP_TIMEOUT_S = 1800
# Debian packages the builds need (scripts/ensure-debian-packages.sh installs the missing ones).
# libstdc++-arm-none-eabi-newlib: the pico-sdk compiles one C++ file (new/delete) into every RP2 image.
DEB_PACKAGES = (
    "gcc-arm-none-eabi",
    "libnewlib-arm-none-eabi",
    "libstdc++-arm-none-eabi-newlib",
    "qemu-system-arm",
    "cmake",
)
# GC bookkeeping (allocation table and finaliser bits) takes ~2.3% of MICROPY_HEAP_SIZE: the heap is sized so
# that gc.mem_free() right after boot is about the profile's free heap, what a board reports to the firmware.
GC_OVERHEAD = 1.024


def heap_size_for(profile: Path = HEAP_PROFILE) -> int:
    """MICROPY_HEAP_SIZE for the QEMU image: the profile's free heap plus the GC's tables, in whole KB."""
    free = json.loads(profile.read_text())["ram"]["free_heap_bytes"]
    return math.ceil(free * GC_OVERHEAD / 1024) * 1024


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _name(path: Path) -> str:
    """A path as the manifest records it: relative to the checkout when inside it."""
    path = path.resolve()
    return path.relative_to(CHECKOUT).as_posix() if path.is_relative_to(CHECKOUT) else str(path)


def inputs_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every build input of ours (board files, patches, user C modules), so a stale image is
    detectable by a test that only reads files. Markdown is documentation, not input: a README's figures
    can be corrected without rebuilding the binaries."""
    return {
        _name(p): sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".md"
    }


def registered_modules(folder: Path) -> list[str]:
    """The MicroPython modules the user C sources register (MP_REGISTER_MODULE), for the manifest: what
    `import` finds on the image besides the port's own modules."""
    found = set()
    for src in folder.rglob("*.c"):
        found.update(re.findall(r"MP_REGISTER_MODULE\(\s*MP_QSTR_(\w+)", src.read_text()))
    return sorted(found)


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "absent"
    return out.splitlines()[0].strip() if out else "absent"


def _deb_version(package: str) -> str:
    return _first_line(["dpkg-query", "-W", "-f=${Version}\n", package])


def toolchain() -> dict[str, str]:
    """The versions a bit-for-bit rebuild needs to match."""
    return {
        "arm-none-eabi-gcc": _first_line(["arm-none-eabi-gcc", "--version"]),
        "gcc-arm-none-eabi (deb)": _deb_version("gcc-arm-none-eabi"),
        "libnewlib-arm-none-eabi (deb)": _deb_version("libnewlib-arm-none-eabi"),
        "libstdc++-arm-none-eabi-newlib (deb)": _deb_version("libstdc++-arm-none-eabi-newlib"),
        "binutils-arm-none-eabi (deb)": _deb_version("binutils-arm-none-eabi"),
        "cmake": _first_line(["cmake", "--version"]),
        "host gcc": _first_line(["gcc", "--version"]),
        "qemu-system-arm (runs the QEMU image; not a build input)": _first_line(
            ["qemu-system-arm", "--version"]
        ),
        "python": sys.version.split()[0],
    }


def build_env(pins: dict) -> dict[str, str]:
    """The environment of every build step: a fixed version header and no git above build/sources."""
    mp = pins["micropython"]
    env = dict(os.environ)
    env.update(
        MICROPY_GIT_TAG=mp["ref"],
        MICROPY_GIT_HASH=mp["commit"][:10],
        SOURCE_DATE_EPOCH=str(mp["commit_time"]),
        GIT_CEILING_DIRECTORIES=str(SOURCES_DIR.resolve()),
        LC_ALL="C",
        TZ="UTC",
    )
    return env


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
    """One build step, echoed so the log shows the exact command; bounded like every subprocess here."""
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=cwd, timeout=STEP_TIMEOUT_S)


def cleared(folder: Path) -> Path:
    """`folder`, gone: every build starts from nothing, so no object of an earlier run (another flag, another
    module set) can reach an image, and a rebuild gives the same bytes."""
    if folder.exists():
        shutil.rmtree(folder)
    return folder


def build_mpy_cross(mp_dir: Path, jobs: int, env: dict[str, str]) -> None:
    run(["make", "-C", str(mp_dir / "mpy-cross"), f"-j{jobs}"], env)


def build_qemu(
    mp_dir: Path, jobs: int, env: dict[str, str], user_c_modules: Path | None, heap_size: int
) -> list[Path]:
    """ports/qemu + our patch, copied to ports/pinseal_qemu (so the stock port stays as extracted)."""
    builds = BUILDS_DIR / "qemu-mps2-an385"
    port = cleared(mp_dir / "ports" / "pinseal_qemu")
    shutil.copytree(mp_dir / "ports" / "qemu", port)
    for patch in sorted((builds / "patches").glob("*.patch")):
        run(["patch", "-p1", "--no-backup-if-mismatch", "-d", str(port), "-i", str(patch)], env)
    out = cleared(WORK_DIR / "qemu-mps2-an385")
    cmd = [
        "make",
        "-C",
        str(port),
        f"-j{jobs}",
        "BOARD=PINSEAL_MPS2_AN385",
        f"BOARD_DIR={(builds / 'board').resolve()}",
        f"BUILD={out.resolve()}",
        f"MICROPY_HEAP_SIZE={heap_size}",
    ]
    if user_c_modules:
        cmd.append(f"USER_C_MODULES={user_c_modules.resolve()}")
    run(cmd, env)
    return [out / "firmware.elf"]


def build_picotool(picotool_src: Path, mp_dir: Path, jobs: int, env: dict[str, str]) -> Path:
    """picotool 2.2.0 from its pin, installed under build/; returns the folder for -Dpicotool_DIR."""
    build = WORK_DIR / "picotool-build"
    prefix = WORK_DIR / "picotool"
    config = prefix / "lib" / "cmake" / "picotool"
    if (config / "picotoolConfig.cmake").is_file():
        return config
    cleared(build)
    run(
        [
            "cmake",
            "-S",
            str(picotool_src.resolve()),
            "-B",
            str(build.resolve()),
            f"-DPICO_SDK_PATH={(mp_dir / 'lib' / 'pico-sdk').resolve()}",
            "-DPICOTOOL_NO_LIBUSB=1",
            f"-DCMAKE_INSTALL_PREFIX={prefix.resolve()}",
        ],
        env,
    )
    run(["make", "-C", str(build), f"-j{jobs}", "install"], env)
    return config


def build_rp2(
    mp_dir: Path, picotool_config: Path, jobs: int, env: dict[str, str], user_c_modules: Path | None
) -> list[Path]:
    """The stock RP2 port for RPI_PICO (v1.28.0), with the user C modules if any."""
    out = cleared(WORK_DIR / "rp2-pico")
    cmd = [
        "make",
        "-C",
        str(mp_dir / "ports" / "rp2"),
        f"-j{jobs}",
        "BOARD=RPI_PICO",
        f"BUILD={out.resolve()}",
    ]
    if user_c_modules:
        cmd.append(f"USER_C_MODULES={(user_c_modules / 'micropython.cmake').resolve()}")
    # CMAKE_ARGS goes in the environment: on make's command line it would override the port Makefile's own
    # `CMAKE_ARGS += -DMICROPY_BOARD=... -DUSER_C_MODULES=...`, and the user C modules would silently vanish.
    run(cmd, {**env, "CMAKE_ARGS": f"-Dpicotool_DIR={picotool_config.resolve()}"})
    return [out / "firmware.uf2"]


def write_manifest(
    out: Path, name: str, files: list[Path], pins: dict, command: str, extra: dict, seconds: float
) -> dict:
    """Copy the built files into <out>/<name>/ (micropython/images/ unless --out) with manifest.json."""
    dest = out / name
    dest.mkdir(parents=True, exist_ok=True)
    described = []
    for src in files:
        shutil.copyfile(src, dest / src.name)
        described.append({"file": src.name, "bytes": src.stat().st_size, "sha256": sha256(src)})
    used = [
        {"path": s["path"], "repo": s["repo"], "commit": s["commit"]}
        for s in pins["submodules"]
        if name in s["needed_by"]
    ]
    tools = [
        {"name": t["name"], "repo": t["repo"], "ref": t["ref"], "commit": t["commit"]}
        for t in pins["tools"]
        if name in t["needed_by"]
    ]
    libraries = [
        {k: lib[k] for k in ("name", "repo", "ref", "commit", "licence")}
        for lib in pins.get("libraries", [])
        if name in lib["needed_by"] and extra.get("user_c_modules")
    ]
    manifest = {
        "image": name,
        "files": described,
        "sources": {
            "micropython": {k: pins["micropython"][k] for k in ("repo", "ref", "commit")},
            "submodules": used,
            "tools": tools,
            "libraries": libraries,
        },
        "build_command": command,
        "toolchain": toolchain(),
        **extra,
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    # The build time is reported, not recorded: the manifest of an identical rebuild stays identical.
    return {**manifest, "build_seconds": round(seconds, 1)}


def write_bootrom(pins: dict, snapshots: Path, out: Path = IMAGES_DIR) -> dict:
    """The RP2040 B1 bootrom rp2040js boots from: not in its npm package, so it is committed here.

    Taken from the rp2040js repository's demo/bootrom.ts (32-bit words of the binary built from
    raspberrypi/pico-bootrom's B1 source) and written as the 16 KB little-endian image, with both licences.
    """
    pin = pins["bootrom"]
    git_dir = sources.snapshot_dir(snapshots, pin["repo"])
    text = subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", f"{pin['commit']}:{pin['path']}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    body = text[text.index("new Uint32Array([") : text.index("]);")]
    words = [int(w, 16) for w in re.findall(r"0x[0-9a-fA-F]+", body)]
    data = b"".join(w.to_bytes(4, "little") for w in words)
    if len(data) != 16384:
        raise ValueError(f"the bootrom is {len(data)} bytes, expected 16384")
    dest = out / "rp2040-bootrom"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "bootrom_b1.bin").write_bytes(data)
    licences = {"LICENSE.rp2040js": (pin["repo"], pin["commit"], "LICENSE")}
    licences["LICENSE.pico-bootrom"] = (pin["licence_repo"], pin["licence_commit"], "LICENSE.TXT")
    for name, (repo, commit, path) in licences.items():
        git = sources.snapshot_dir(snapshots, repo)
        out = subprocess.run(
            ["git", f"--git-dir={git}", "show", f"{commit}:{path}"],
            check=True,
            capture_output=True,
            timeout=60,
        ).stdout
        (dest / name).write_bytes(out)
    manifest = {
        "image": "rp2040-bootrom",
        "files": [{"file": "bootrom_b1.bin", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}],
        "source": {"repo": pin["repo"], "commit": pin["commit"], "path": pin["path"]},
        "built_from": pin["built_from"],
        "licences": {name: f"{repo}@{commit[:10]}:{path}" for name, (repo, commit, path) in licences.items()},
        "build_command": "make firmware-images",
        "why": "rp2040js needs the RP2040's mask ROM to boot a UF2 image; its npm package does not ship it",
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=IMAGES, default=list(IMAGES), help="images to build")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="parallel compile jobs")
    parser.add_argument(
        "--snapshots", type=Path, default=sources.DEFAULT_SNAPSHOTS, help="bare git snapshots"
    )
    parser.add_argument(
        "--user-c-modules",
        type=Path,
        default=DEFAULT_USER_C_MODULES if DEFAULT_USER_C_MODULES.is_dir() else None,
        help=f"a MicroPython user C module folder (default {DEFAULT_USER_C_MODULES} if present)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=IMAGES_DIR,
        help=f"where the images and manifests go (default {IMAGES_DIR}, the committed ones)",
    )
    parser.add_argument(
        "--heap-size",
        type=int,
        default=heap_size_for(),
        help="the QEMU image's MICROPY_HEAP_SIZE in bytes (default: the esp32_devkitc profile's RAM, "
        f"{heap_size_for()}; other sizes are for make bench-silicon's heap bisection, not for committing)",
    )
    args = parser.parse_args(argv)
    if args.heap_size < 8192 or args.heap_size % 1024:
        parser.error(f"--heap-size {args.heap_size}: a whole number of KB, at least 8 KB")
    subprocess.run(
        [str(CHECKOUT / "scripts" / "ensure-debian-packages.sh"), *DEB_PACKAGES], check=True, timeout=900
    )
    wanted = set(args.only)
    pins = sources.load_pins()
    dirs = sources.extract_all(pins, args.snapshots, SOURCES_DIR, wanted)
    mp_dir = dirs["micropython"]
    env = build_env(pins)
    command = "make firmware-images" + (f" IMAGES='{' '.join(args.only)}'" if wanted != set(IMAGES) else "")
    user_mods = args.user_c_modules
    if user_mods and not (user_mods / "micropython.cmake").is_file() and "rp2-pico" in wanted:
        parser.error(
            f"{user_mods}: the RP2 build needs micropython.cmake there (a MicroPython user C module)"
        )
    if user_mods and not list(user_mods.glob("*/micropython.mk")) and "qemu-mps2-an385" in wanted:
        parser.error(f"{user_mods}: the QEMU build needs <module>/micropython.mk there")
    common: dict = {"user_c_modules": _name(user_mods) if user_mods else None}
    if user_mods:
        common["native_modules"] = registered_modules(user_mods)
        common["user_c_modules_inputs"] = inputs_digest(user_mods)
    bootrom = write_bootrom(pins, args.snapshots, args.out)
    _report({**bootrom, "build_seconds": 0.0})
    build_mpy_cross(mp_dir, args.jobs, env)
    if "qemu-mps2-an385" in wanted:
        start = time.monotonic()
        files = build_qemu(mp_dir, args.jobs, env, user_mods, args.heap_size)
        extra = {
            **common,
            "machine": "qemu-system-arm -machine mps2-an385 (Cortex-M3)",
            "micropython_heap_size": args.heap_size,
            "heap_profile": HEAP_PROFILE.relative_to(CHECKOUT).as_posix(),
            "inputs": inputs_digest(BUILDS_DIR / "qemu-mps2-an385"),
        }
        m = write_manifest(args.out, "qemu-mps2-an385", files, pins, command, extra, time.monotonic() - start)
        _report(m)
    if "rp2-pico" in wanted:
        start = time.monotonic()
        config = build_picotool(dirs["picotool"], mp_dir, args.jobs, env)
        files = build_rp2(mp_dir, config, args.jobs, env, user_mods)
        extra = {**common, "board": "RPI_PICO (RP2040)"}
        m = write_manifest(args.out, "rp2-pico", files, pins, command, extra, time.monotonic() - start)
        _report(m)
    return 0


def _report(manifest: dict) -> None:
    for f in manifest["files"]:
        print(f"image {manifest['image']}/{f['file']}: {f['bytes']} bytes, sha256 {f['sha256']}")
    print(f"image {manifest['image']}: built in {manifest['build_seconds']} s")


if __name__ == "__main__":
    sys.exit(main())
