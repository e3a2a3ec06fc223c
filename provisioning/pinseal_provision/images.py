"""The MicroPython image to flash: the profile's official one (downloaded once, cached) or a local file.

The board profile names the official image (`micropython.image_base_url` + `micropython.image_file`, the
micropython.org layout `<BOARD>-<YYYYMMDD>-v<version>.<ext>`) and, only where a person verified it from the
real file, its SHA-256 (`image_sha256`, otherwise null: a made-up value would make every download fail, or
worse, look verified). So an image is trusted in this order:

1. a SHA-256 to enforce: `--sha256 HEX`, else the profile's pinned one (downloads only: a local file may be
   another build, e.g. pinseal's own with a ROMFS partition); a mismatch is an error;
2. always the structural checks of `image_checks` (right chip, complete, fits the flash);
3. without a hash to enforce, the SHA-256 is printed so the user can compare it with a copy they trust.

The cache is `--cache-dir`, else `$PINSEAL_IMAGE_CACHE`, else `$XDG_CACHE_HOME/pinseal/images`, else
`~/.cache/pinseal/images`; `$PINSEAL_IMAGE_BASE_URL` replaces the profile's base URL (a mirror, or the
tests' local server). A cached file is reused only if it passes the same checks; one that fails is renamed
to `<name>.rejected` (kept for inspection, never used) and the image is downloaded again. Everything here
happens before a port is opened, so a bad file is never reported as a board problem.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinseal_provision.download import DownloadFailed, download
from pinseal_provision.errors import BadInput, ImageUnavailable
from pinseal_provision.image_checks import check_image

Say = Callable[[str], None]
Progress = Callable[[int, int], None]

ENV_BASE_URL = "PINSEAL_IMAGE_BASE_URL"
ENV_CACHE_DIR = "PINSEAL_IMAGE_CACHE"
DOWNLOAD_TIMEOUT_S = 60.0
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class OfficialImage:
    """Where the profile's official image comes from and the SHA-256 a person pinned for it (or None)."""

    url: str
    file_name: str
    sha256: str | None


def official_image(profile: dict[str, Any], environ: Mapping[str, str] = os.environ) -> OfficialImage:
    """The download the profile names; the base URL can be replaced through $PINSEAL_IMAGE_BASE_URL."""
    mp = profile["micropython"]
    file_name = mp.get("image_file")
    base = environ.get(ENV_BASE_URL) or mp.get("image_base_url")
    if not file_name or not base:
        raise BadInput(
            f"board profile {profile['id']} names no official image (micropython.image_file/image_base_url)",
            "pass the image file with --image",
        )
    pinned = mp.get("image_sha256")
    return OfficialImage(base.rstrip("/") + "/" + file_name, file_name, pinned.lower() if pinned else None)


def cache_folder(override: Path | None = None, environ: Mapping[str, str] = os.environ) -> Path:
    """Where downloaded images are kept between runs."""
    if override is not None:
        return override
    if environ.get(ENV_CACHE_DIR):
        return Path(environ[ENV_CACHE_DIR])
    xdg = environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "pinseal" / "images"


def parse_sha256(text: str | None) -> str | None:
    """A --sha256 argument: 64 hex digits (any case), or None."""
    if text is None:
        return None
    value = text.strip().lower()
    if not _HEX64.match(value):
        raise BadInput(f"--sha256 {text!r} is not a SHA-256 (64 hex digits)")
    return value


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_file(path: Path, profile: dict[str, Any], expected_sha256: str | None, say: Say) -> str:
    """Structural checks, then the hash (enforced if given, else printed); returns the file's SHA-256."""
    summary = check_image(path, profile)  # first: "file not found" / wrong chip say more than a hash
    digest = sha256_file(path)
    if expected_sha256 is not None and digest != expected_sha256:
        raise BadInput(
            f"{path}: SHA-256 {digest} does not match the expected {expected_sha256}",
            "this is not the file that hash was taken from: check the --sha256 value and the file's origin",
        )
    say(f"checks passed: {summary}")
    if expected_sha256 is not None:
        say(f"SHA-256 {digest} matches")
    else:
        say(f"SHA-256 {digest} (no hash to enforce: compare it with a copy you trust, or pass --sha256)")
    return digest


def local_image(path: Path, profile: dict[str, Any], expected_sha256: str | None, say: Say) -> Path:
    """A file the user named: checked, never altered or moved (even when it fails)."""
    if path.is_file():  # a missing one: check_file says "file not found", not "0 bytes"
        say(f"image {path} ({path.stat().st_size} bytes)")
    check_file(path, profile, expected_sha256, say)
    return path


def _quarantine(path: Path, reason: str, say: Say) -> Path:
    rejected = path.with_name(path.name + ".rejected")
    os.replace(path, rejected)
    say(f"{path} failed its check ({reason}); moved to {rejected}, not used")
    return rejected


def cached_or_download(
    profile: dict[str, Any],
    *,
    cache_dir: Path | None = None,
    expected_sha256: str | None = None,
    say: Say = lambda text: None,
    progress: Progress | None = None,
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
    environ: Mapping[str, str] = os.environ,
) -> Path:
    """The profile's official image, checked: from the cache if a good copy is there, else downloaded."""
    source = official_image(profile, environ)
    folder = cache_folder(cache_dir, environ)
    want = expected_sha256 if expected_sha256 is not None else source.sha256
    path = folder / source.file_name
    if path.is_file():
        say(f"using the cached {path} ({path.stat().st_size} bytes)")
        try:
            check_file(path, profile, want, say)
            return path
        except BadInput as exc:
            _quarantine(path, str(exc), say)
    say(f"downloading {source.url} -> {path}")
    try:
        size = download(source.url, path, timeout_s=timeout_s, progress=progress)
    except DownloadFailed as exc:
        board_page = f"micropython.org/download/{profile['micropython']['board']}"
        fix = (
            f"the profile's image_file may be wrong: see {board_page}"
            if exc.http_status == 404
            else "check the network"
        )
        raise ImageUnavailable(
            f"cannot download {source.url}: {exc}",
            f"{fix}; or download {source.file_name} yourself into the cache folder {folder}, "
            "or pass --image FILE",
        ) from exc
    except OSError as exc:  # the cache folder itself: not writable, disk full
        raise ImageUnavailable(
            f"cannot write the image into the cache folder {folder}: {exc}",
            "pass --cache-dir (or set PINSEAL_IMAGE_CACHE) to a writable folder, or --image FILE",
        ) from exc
    say(f"downloaded {size} bytes")
    try:
        check_file(path, profile, want, say)
    except BadInput as exc:
        rejected = _quarantine(path, str(exc), say)
        raise BadInput(
            f"the download of {source.url} failed its check: {exc}",
            f"the server did not send the expected image (kept as {rejected}); pass --image FILE",
        ) from exc
    return path


def image_for_flash(
    profile: dict[str, Any],
    image: Path | None,
    *,
    cache_dir: Path | None = None,
    expected_sha256: str | None = None,
    say: Say = lambda text: None,
    progress: Progress | None = None,
) -> Path:
    """What `flash` writes: the named local file, or the official image (cached or downloaded)."""
    if image is not None:
        return local_image(image, profile, expected_sha256, say)
    return cached_or_download(
        profile, cache_dir=cache_dir, expected_sha256=expected_sha256, say=say, progress=progress
    )
