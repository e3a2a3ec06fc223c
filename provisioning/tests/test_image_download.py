"""Getting the official image: a real HTTP server on 127.0.0.1 serving micropython.org's path layout, a real
cache folder, real esptool/UF2 images; esptool's chip API is replaced at its boundary as in test_flash.py.

Covers: a good download then reuse without a request, a truncated body, a wrong hash (given or in the cache),
no server at all, a wrong-chip image, a missing local file, and `flash --board B` with no image reaching
esptool's write_flash (ESP32) or the UF2 drive (Pico W) with exactly the served bytes.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from esptool import cmds
from image_samples import esp_bin, uf2
from rich.console import Console

from pinseal_provision import cli, images, profiles
from pinseal_provision.errors import BadInput, ImageUnavailable

ESP32 = profiles.load_profile("esp32_devkitc")
PICO_W = profiles.load_profile("pico_w")
FOLDER = "/resources/firmware/"  # micropython.org's layout, from the profiles' image_base_url
ESP32_FILE = ESP32["micropython"]["image_file"]
PICO_W_FILE = PICO_W["micropython"]["image_file"]
GOOD_BIN = esp_bin("esp32", pad_to=64 * 1024)


@dataclass
class ImageServer:
    """What the server holds and what it was asked for."""

    base_url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    truncate: set[str] = field(default_factory=set)  # send only half of the body, then close
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[ImageServer]:
    state = ImageServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if self.path in state.truncate else body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}{FOLDER}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback traffic stays on loopback even where the environment names a proxy."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")


def fetch(
    server: ImageServer, cache: Path, profile: dict[str, Any] = ESP32, **kw: Any
) -> tuple[Path, list[str]]:
    said: list[str] = []
    path = images.cached_or_download(
        profile, cache_dir=cache, say=said.append, environ={images.ENV_BASE_URL: server.base_url}, **kw
    )
    return path, said


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_good_download_is_checked_cached_and_reused_without_a_request(
    server: ImageServer, tmp_path: Path
) -> None:
    server.files[FOLDER + ESP32_FILE] = GOOD_BIN
    cache = tmp_path / "cache"
    path, said = fetch(server, cache)
    assert path == cache / ESP32_FILE and path.read_bytes() == GOOD_BIN
    assert server.requests == [FOLDER + ESP32_FILE]
    assert f"downloading {server.base_url}{ESP32_FILE} -> {path}" in said
    assert f"downloaded {len(GOOD_BIN)} bytes" in said
    assert any(s.startswith("checks passed: ESP32 image (esptool: chip id 0") for s in said)
    assert any(s.startswith(f"SHA-256 {sha(GOOD_BIN)} (no hash to enforce") for s in said)
    assert sorted(p.name for p in cache.iterdir()) == [ESP32_FILE]  # no temporary file left

    again, said = fetch(server, cache)
    assert again == path and server.requests == [FOLDER + ESP32_FILE]  # no second request
    assert said[0].startswith(f"using the cached {path}")


def test_a_truncated_download_leaves_no_file_and_says_so(server: ImageServer, tmp_path: Path) -> None:
    server.files[FOLDER + ESP32_FILE] = GOOD_BIN
    server.truncate.add(FOLDER + ESP32_FILE)
    cache = tmp_path / "cache"
    with pytest.raises(ImageUnavailable, match=f"closed after {len(GOOD_BIN) // 2} of {len(GOOD_BIN)} bytes"):
        fetch(server, cache)
    assert list(cache.iterdir()) == []


def test_a_wrong_hash_is_refused_and_the_file_kept_aside(server: ImageServer, tmp_path: Path) -> None:
    server.files[FOLDER + ESP32_FILE] = GOOD_BIN
    cache = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(BadInput, match=f"SHA-256 {sha(GOOD_BIN)} does not match the expected {wrong}"):
        fetch(server, cache, expected_sha256=wrong)
    assert not (cache / ESP32_FILE).exists()
    assert (cache / (ESP32_FILE + ".rejected")).read_bytes() == GOOD_BIN

    path, said = fetch(server, cache, expected_sha256=sha(GOOD_BIN))
    assert f"SHA-256 {sha(GOOD_BIN)} matches" in said and path.read_bytes() == GOOD_BIN


def test_a_cached_file_failing_the_hash_is_not_used(server: ImageServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    damaged = bytearray(GOOD_BIN)
    damaged[-1] ^= 0xFF  # in the padding: esptool's structure still reads, only the hash tells
    (cache / ESP32_FILE).write_bytes(damaged)
    server.files[FOLDER + ESP32_FILE] = GOOD_BIN
    pinned = {**ESP32, "micropython": {**ESP32["micropython"], "image_sha256": sha(GOOD_BIN)}}
    path, said = fetch(server, cache, profile=pinned)
    assert path.read_bytes() == GOOD_BIN and server.requests == [FOLDER + ESP32_FILE]
    assert any("failed its check" in s and "moved to" in s and "not used" in s for s in said)
    assert (cache / (ESP32_FILE + ".rejected")).read_bytes() == bytes(damaged)


def test_no_network_names_the_url_and_the_cache_folder(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}{FOLDER}"
    cache = tmp_path / "cache"
    with pytest.raises(ImageUnavailable) as failed:
        images.cached_or_download(ESP32, cache_dir=cache, environ={images.ENV_BASE_URL: url}, timeout_s=5)
    assert f"cannot download {url}{ESP32_FILE}" in str(failed.value)
    assert str(cache) in failed.value.hint and "--image" in failed.value.hint


def test_a_name_the_server_does_not_have_points_at_the_profile(server: ImageServer, tmp_path: Path) -> None:
    with pytest.raises(ImageUnavailable, match="HTTP 404") as failed:
        fetch(server, tmp_path / "cache")
    assert "image_file may be wrong" in failed.value.hint and "ESP32_GENERIC" in failed.value.hint
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_image_for_another_chip_is_refused_after_download(server: ImageServer, tmp_path: Path) -> None:
    server.files[FOLDER + ESP32_FILE] = esp_bin("esp32s3")
    with pytest.raises(BadInput, match=r"not an image for this chip \(built for the ESP32-S3"):
        fetch(server, tmp_path / "cache")
    assert not (tmp_path / "cache" / ESP32_FILE).exists()


def test_sha256_option_must_be_a_sha256() -> None:
    assert images.parse_sha256(" " + "AB" * 32) == "ab" * 32
    with pytest.raises(BadInput, match="64 hex digits"):
        images.parse_sha256("abc")


def test_cache_folder_override_order(tmp_path: Path) -> None:
    assert images.cache_folder(tmp_path / "x", {images.ENV_CACHE_DIR: "/y"}) == tmp_path / "x"
    assert images.cache_folder(None, {images.ENV_CACHE_DIR: "/y", "XDG_CACHE_HOME": "/z"}) == Path("/y")
    assert images.cache_folder(None, {"XDG_CACHE_HOME": "/z"}) == Path("/z/pinseal/images")
    assert images.cache_folder(None, {}) == Path.home() / ".cache/pinseal/images"


# -- the CLI: errors about the file come before any port; a downloaded image reaches esptool / the drive -----
@pytest.fixture(autouse=True)
def unwrapped_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's messages, one per line (rich wraps at 80 columns when stderr is not a terminal)."""
    monkeypatch.setattr(cli, "err", Console(stderr=True, width=10_000))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["flash", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_missing_or_wrong_local_file_is_reported_before_any_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.bin"
    for argv in (["--image", str(missing)], [str(missing)]):  # no --port, no board here: the file comes first
        code, _, err = run_cli(capsys, "--board", "esp32_devkitc", *argv)
        assert code == 2 and f"error: file not found: {missing}" in err and "no board" not in err
    s3 = tmp_path / "s3.bin"
    s3.write_bytes(esp_bin("esp32s3"))
    code, _, err = run_cli(capsys, "--board", "esp32_devkitc", "--image", str(s3))
    assert code == 2 and "is not an image for this chip (built for the ESP32-S3" in err
    pico2 = tmp_path / "pico2.uf2"
    pico2.write_bytes(uf2(0xE48BFF59))
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    code, _, err = run_cli(capsys, "--board", "pico_w", str(pico2), "--volume", str(drive))
    assert code == 2 and "is not an image for this chip (UF2 family 0xe48bff59, not rp2040)" in err
    assert list(drive.iterdir()) == []


@pytest.fixture
def esptool_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bytes]]:
    """esptool.cmds at its boundary: an ESP32 answers, write_flash records what it was given."""

    class Esp:
        CHIP_NAME = "ESP32"

        def __enter__(self) -> Esp:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    writes: list[tuple[int, bytes]] = []
    monkeypatch.setattr(cmds, "detect_chip", lambda port, baud=115200, **kw: Esp())
    monkeypatch.setattr(cmds, "run_stub", lambda esp: esp)
    monkeypatch.setattr(cmds, "attach_flash", lambda esp, *a, **k: None)
    monkeypatch.setattr(cmds, "erase_flash", lambda esp, *a, **k: None)
    monkeypatch.setattr(
        cmds,
        "write_flash",
        lambda esp, pairs, **kw: writes.extend((a, Path(f).read_bytes()) for a, f in pairs),
    )
    monkeypatch.setattr(cmds, "reset_chip", lambda esp, mode="hard-reset": None)
    return writes


def test_flash_without_an_image_downloads_then_reuses_the_official_one(
    server: ImageServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    esptool_writes: list[tuple[int, bytes]],
) -> None:
    server.files[FOLDER + ESP32_FILE] = GOOD_BIN
    monkeypatch.setenv(images.ENV_BASE_URL, server.base_url)
    monkeypatch.setenv(images.ENV_CACHE_DIR, str(tmp_path / "cache"))
    port = "rfc2217://127.0.0.1:4000"  # a URL is used as given; esptool's side is replaced
    code, out, err = run_cli(capsys, "--board", "esp32_devkitc", "--port", port)
    assert code == 0, err
    assert esptool_writes == [(0x1000, GOOD_BIN)]
    assert f"downloading {server.base_url}{ESP32_FILE}" in err and "checks passed" in err
    assert f"{port}: MicroPython written at 0x1000" in out

    code, _, err = run_cli(capsys, "--board", "esp32_devkitc", "--port", port, "--sha256", sha(GOOD_BIN))
    assert code == 0 and "using the cached" in err and "matches" in err
    assert len(server.requests) == 1 and esptool_writes[1] == (0x1000, GOOD_BIN)


def test_flash_pico_w_without_an_image_copies_the_download_to_the_drive(
    server: ImageServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    image = uf2(0xE48BFF56, blocks=8)
    server.files[FOLDER + PICO_W_FILE] = image
    monkeypatch.setenv(images.ENV_BASE_URL, server.base_url)
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    code, out, err = run_cli(
        capsys, "--board", "pico_w", "--volume", str(drive), "--cache-dir", str(tmp_path / "cache")
    )
    assert code == 0, err
    assert (drive / PICO_W_FILE).read_bytes() == image
    assert f"{drive / PICO_W_FILE}: written" in out
    assert "UF2 image for rp2040, 8 blocks" in err


def test_no_network_from_the_cli_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(images.ENV_BASE_URL, f"http://127.0.0.1:{port}/fw/")
    code, _, err = run_cli(capsys, "--board", "pico_w", "--cache-dir", str(tmp_path / "c"))
    assert code == 1
    assert f"error: cannot download http://127.0.0.1:{port}/fw/{PICO_W_FILE}" in err
    assert str(tmp_path / "c") in err and "--image FILE" in err and "Traceback" not in err
