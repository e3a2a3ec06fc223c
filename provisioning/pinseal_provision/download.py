"""One HTTP(S) download into a file that is either complete or absent.

A firmware image cut short by a dropped connection looks like an image until it is written to a board, so
the bytes go to a temporary file beside the destination, are counted against Content-Length, synced, and
only then renamed over the destination (atomic within one folder). Any failure removes the temporary file
and raises `DownloadFailed`; the destination is never left half-written. Standard library only (urllib,
which also honours the usual `https_proxy` / `no_proxy` variables), with a timeout on every socket wait.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

Progress = Callable[[int, int], None]
CHUNK_BYTES = 64 * 1024
USER_AGENT = "pinseal-provision (image download)"


class DownloadFailed(Exception):
    """The file could not be fetched whole; the message says why (HTTP status, network error, short read).
    `http_status` is the server's answer when there was one (404: the name is wrong, not the network)."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


def part_files(dest: Path) -> list[Path]:
    """Temporary files an interrupted download of `dest` may have left (a killed process cannot clean up)."""
    return sorted(dest.parent.glob(f".{dest.name}.*.part"))


def download(url: str, dest: Path, *, timeout_s: float = 60.0, progress: Progress | None = None) -> int:
    """Fetch `url` into `dest` (replacing it only when complete); returns the number of bytes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in part_files(dest):
        with contextlib.suppress(OSError):
            stale.unlink()
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            size = _fetch(url, out, timeout_s, progress)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return size


def _fetch(url: str, out: BinaryIO, timeout_s: float, progress: Progress | None) -> int:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    done = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total or 0)
    except urllib.error.HTTPError as exc:
        raise DownloadFailed(f"HTTP {exc.code} {exc.reason}", exc.code) from exc
    except urllib.error.URLError as exc:
        raise DownloadFailed(str(exc.reason)) from exc
    except (OSError, http.client.HTTPException) as exc:  # reset, timeout, chunked body cut short
        raise DownloadFailed(f"the connection broke after {done} bytes ({exc!r})") from exc
    if total is not None and done != total:
        raise DownloadFailed(f"the connection closed after {done} of {total} bytes")
    return done
