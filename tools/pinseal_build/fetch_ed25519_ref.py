"""Bring in the Ed25519 and SHA-512 C code that the native module (firmware/native) is compiled with.

The arithmetic is D. J. Bernstein et al.'s public-domain SUPERCOP `crypto_sign/ed25519/ref` code, as shipped
in the `ed25519==1.5` source distribution on PyPI (its `src/ed25519-supercop-ref/`). It is third-party code,
so it is never copied into this repository: this script downloads the sdist with pip once (kept in
build/native/; or takes one given, for a machine without PyPI), refuses it unless its SHA-256 is the pinned
one, and extracts only the C files the module compiles into `build/native/supercop-ref/`. The .mk/.cmake glue
takes that folder from `PINSEAL_ED25519_REF_DIR` (default: this one).

    python -m pinseal_build.fetch_ed25519_ref [--sdist ed25519-1.5.tar.gz] [--dest DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from pinseal_build.locations import BUILD_DIR

SDIST_NAME = "ed25519-1.5.tar.gz"
SDIST_REQUIREMENT = "ed25519==1.5"
# sha256 of ed25519-1.5.tar.gz as PyPI serves it (checked on 2026-12-07); any other bytes are refused.
SDIST_SHA256 = "02053ee019ceef0df97294be2d4d5a8fc120fc86e81e08bec1245fc0f9403358"
REF_PREFIX = "ed25519-1.5/src/ed25519-supercop-ref/"
# What the native module compiles or includes: field, group and scalar arithmetic, the base-point table,
# the SHA-512 block function and their headers. Not ed25519.c (its crypto_sign copies the whole message
# into a caller's buffer: our glue signs and verifies in constant memory instead), nor the sdist's
# Python glue, tests or Makefile.
REF_FILES = (
    "fe25519.c",
    "fe25519.h",
    "ge25519.c",
    "ge25519.h",
    "ge25519_base.data",
    "sc25519.c",
    "sc25519.h",
    "sha512-blocks.c",
    "crypto_int32.h",
    "crypto_uint32.h",
)
DEFAULT_DEST = BUILD_DIR / "native" / "supercop-ref"
CACHED_SDIST = BUILD_DIR / "native" / SDIST_NAME
PIP_TIMEOUT_S = 300


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def download_sdist(into: Path) -> Path:
    """`pip download` of the pinned sdist (source only, no dependencies) into `into`."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-binary",
        ":all:",
        "--no-deps",
        SDIST_REQUIREMENT,
        "-d",
        str(into),
    ]
    subprocess.run(cmd, check=True, timeout=PIP_TIMEOUT_S)
    return into / SDIST_NAME


def extract(sdist: Path, dest: Path) -> list[Path]:
    """Check the sdist's hash, then write REF_FILES (and nothing else) into dest; returns what it wrote."""
    digest = sha256_of(sdist)
    if digest != SDIST_SHA256:
        raise SystemExit(f"{sdist}: sha256 {digest}, expected {SDIST_SHA256}: refusing to build from it")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(sdist, "r:gz") as tar:
        for name in REF_FILES:
            member = tar.getmember(REF_PREFIX + name)
            if not member.isfile():
                raise SystemExit(f"{sdist}: {member.name} is not a regular file")
            data = tar.extractfile(member)
            assert data is not None
            out = dest / name
            out.write_bytes(data.read())
            written.append(out)
    (dest / "PROVENANCE").write_text(
        f"SUPERCOP crypto_sign/ed25519/ref (public domain), from PyPI {SDIST_NAME}\n"
        f"sha256 {SDIST_SHA256}\nfolder {REF_PREFIX}\nfiles {' '.join(REF_FILES)}\n"
    )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sdist",
        type=Path,
        help=f"a downloaded {SDIST_NAME} (default: {CACHED_SDIST}, pip-downloaded if absent)",
    )
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="where the C files go")
    args = parser.parse_args(argv)
    sdist = args.sdist or CACHED_SDIST
    if not sdist.is_file():
        # downloaded once and kept (build/ is never committed): later builds need no network
        CACHED_SDIST.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHED_SDIST.parent) as tmp:
            download_sdist(Path(tmp)).replace(CACHED_SDIST)
    written = extract(sdist, args.dest)
    print(f"fetch_ed25519_ref: {len(written)} files of {SDIST_NAME} (sha256 ok) in {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
