"""`devices import` / `gateways import` at network scale: streamed, all or nothing, idempotent, on both
engines; the fast key check gives the reference's verdict on every key."""

import io
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_fixtures import sim_device
from nacl.bindings import crypto_core_ed25519_add, crypto_sign_seed_keypair

from pinseal_ingest import bulk_import, db, registry
from pinseal_ingest.cli import main
from pinseal_protocol import keys

BIG = 50_000
SMALL_ORDER = [  # libsodium's blocklist / Wycheproof small-order public keys
    "00" * 32,
    "01" + "00" * 31,
    "ec" + "ff" * 30 + "7f",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "0000000000000000000000000000000000000000000000000000000000000080",  # y = 0... with the sign bit
]


def public_keys(n: int, start: int = 0) -> Iterator[bytes]:
    """Valid Ed25519 public keys, the same on every run (libsodium derives them fast)."""
    for i in range(start, start + n):
        yield crypto_sign_seed_keypair(i.to_bytes(32, "big"))[0]


def write_export(path: Path, n: int, *, start: int = 0, lines: bool = False) -> Path:
    """A provisioning-style export (indented JSON array, as the gateway writes), or JSON Lines."""
    with path.open("w") as fp:
        if lines:
            for i, pk in enumerate(public_keys(n, start)):
                fp.write(json.dumps({"public_key": pk.hex(), "label": f"node {start + i}"}) + "\n")
            return path
        fp.write("[\n")
        for i, pk in enumerate(public_keys(n, start)):
            record = {"kid": keys.key_id(pk).hex(), "public_key": pk.hex(), "label": f"node {start + i}"}
            fp.write(("" if i == 0 else ",\n") + json.dumps(record, indent=2))
        fp.write("\n]\n")
    return path


@pytest.fixture(scope="module")
def big_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_export(tmp_path_factory.mktemp("export") / "devices.json", BIG)


def count(target: str, table: str = "devices") -> int:
    conn = db.connect(target)
    try:
        return int(conn.scalar(f"SELECT COUNT(*) FROM {table}"))
    finally:
        conn.close()


def test_50000_devices_stream_in(
    ingest_target: str, big_export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.perf_counter()
    assert main(["devices", "import", str(big_export), "--db", ingest_target]) == 0
    elapsed = time.perf_counter() - started
    assert capsys.readouterr().out == f"{BIG} devices added, 0 already registered\n"
    engine = "postgresql" if ingest_target.startswith("postgresql") else "sqlite"
    print(f"\n{engine}: {BIG} devices imported in {elapsed:.2f} s ({BIG / elapsed:,.0f} rows/s)")
    assert count(ingest_target) == BIG
    conn = db.connect(ingest_target)
    try:
        pk = next(public_keys(1, BIG - 1))
        assert registry.resolver(conn, "devices")(keys.key_id(pk)) is not None
        label = conn.scalar("SELECT label FROM devices WHERE kid = ?", (keys.key_id(pk),))
        assert label == f"node {BIG - 1}"
    finally:
        conn.close()


def test_reimport_adds_nothing_and_keeps_what_is_there(ingest_target: str, tmp_path: Path) -> None:
    export = write_export(tmp_path / "a.json", 3000)
    conn = db.connect(ingest_target)
    try:
        registry.add(conn, "devices", next(public_keys(1, 5)), label="kept")
        with export.open() as fp:
            assert bulk_import.import_stream(conn, "devices", fp, chunk_chars=4096) == (2999, 1)
        with export.open() as fp:
            assert bulk_import.import_stream(conn, "devices", fp) == (0, 3000)
        assert conn.scalar(
            "SELECT label FROM devices WHERE kid = ?", (keys.key_id(next(public_keys(1, 5))),)
        ) == ("kept")
        # the same key twice in one file: added once, then counted as already registered
        twice = [{"public_key": next(public_keys(1, 9000)).hex()}] * 2
        assert registry.import_devices(conn, twice) == (1, 1)
    finally:
        conn.close()


def test_a_bad_entry_late_in_the_file_leaves_nothing(ingest_target: str, tmp_path: Path) -> None:
    export = tmp_path / "bad.jsonl"
    bad_index = 4321
    with export.open("w") as fp:
        for i, pk in enumerate(public_keys(5000)):
            entry = {"public_key": pk.hex()} if i != bad_index else {"public_key": SMALL_ORDER[3]}
            fp.write(json.dumps(entry) + "\n")
    conn = db.connect(ingest_target)
    try:
        with export.open() as fp, pytest.raises(ValueError, match=f"entry {bad_index}: a small-order"):
            bulk_import.import_entries(
                conn, "devices", bulk_import.iter_entries(fp.read, wrapper="devices"), chunk_rows=500
            )
        assert conn.scalar("SELECT COUNT(*) FROM devices") == 0  # 4,000 rows were inserted, then rolled back
        broken = io.StringIO('[{"public_key": "' + next(public_keys(1)).hex() + '"}, {"public_key": ]')
        with pytest.raises(ValueError, match="entry 1: not JSON"):
            bulk_import.import_stream(conn, "devices", broken)
        assert conn.scalar("SELECT COUNT(*) FROM devices") == 0
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"label": "no key"}, 'entry 1: needs a "public_key" in hex'),
        (["not", "an", "object"], 'entry 1: needs a "public_key" in hex'),
        ({"public_key": "zz"}, "entry 1: not a 32-byte Ed25519 public key in hex"),
        ({"public_key": "ab" * 31}, "entry 1: an Ed25519 public key has 32 bytes, not 31"),
        ({"public_key": SMALL_ORDER[0]}, "entry 1: a small-order"),
        ({"public_key": "KEY", "label": 5}, "entry 1: label must be text"),
        ({"public_key": "KEY", "label": "a\x1bb"}, "entry 1: .*control character"),
        ({"public_key": "KEY", "revoked_at": "yesterday"}, "entry 1: revoked_at must be a Unix time"),
    ],
)
def test_entry_checks_keep_their_messages(tmp_path: Path, entry: object, message: str) -> None:
    good = next(public_keys(1)).hex()
    if isinstance(entry, dict) and entry.get("public_key") == "KEY":
        entry = {**entry, "public_key": next(public_keys(1, 1)).hex()}
    conn = db.connect(tmp_path / "checks.sqlite")
    try:
        with pytest.raises(ValueError, match=message):
            bulk_import.import_entries(conn, "devices", [{"public_key": good}, entry])
        assert conn.scalar("SELECT COUNT(*) FROM devices") == 0
    finally:
        conn.close()


def test_revoked_entries_and_the_wrapper(tmp_path: Path) -> None:
    target = tmp_path / "revoked.sqlite"
    pks = list(public_keys(3))
    export = {
        "version": 1,
        "devices": [
            {"public_key": pks[0].hex(), "revoked": True},
            {"public_key": pks[1].hex(), "revoked_at": 1_700_000_000},
            {"public_key": pks[2].hex(), "revoked_at": None, "added_at": 5},
        ],
    }
    conn = db.connect(target)
    try:
        assert bulk_import.import_stream(
            conn, "devices", io.StringIO(json.dumps(export)), now=1_800_000_000
        ) == (3, 0)
        rows = dict(conn.execute("SELECT public_key, revoked_at FROM devices").fetchall())
        assert rows == {pks[0]: 1_800_000_000, pks[1]: 1_700_000_000, pks[2]: None}
    finally:
        conn.close()


def test_gateways_import_and_json_lines(
    ingest_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = write_export(tmp_path / "gateways.jsonl", 2000, lines=True)
    assert main(["gateways", "import", str(export), "--db", ingest_target]) == 0
    assert capsys.readouterr().out == "2000 gateways added, 0 already registered\n"
    assert count(ingest_target, "gateways") == 2000 and count(ingest_target, "devices") == 0
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"gateways": [{"public_key": next(public_keys(1, 7)).hex()}]}))
    assert main(["gateways", "import", str(wrapped), "--db", ingest_target]) == 0
    assert capsys.readouterr().out == "0 gateways added, 1 already registered\n"


def test_stdin(tmp_path: Path) -> None:
    target = tmp_path / "stdin.sqlite"
    export = write_export(tmp_path / "devices.jsonl", 500, lines=True)
    argv = [sys.executable, "-m", "pinseal_ingest.cli", "devices", "import", "-", "--db", str(target)]
    done = subprocess.run(
        argv, input=export.read_bytes(), capture_output=True, timeout=60, check=False, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == "500 devices added, 0 already registered\n"
    broken = subprocess.run(argv, input=b'[{"public_key": 1}]', capture_output=True, timeout=60, check=False)
    assert broken.returncode == 2 and b'entry 0: needs a "public_key"' in broken.stderr


def test_memory_stays_flat(tmp_path: Path) -> None:
    """Python's peak allocation while importing is about one chunk of rows (1,000 here; 10,000 by default,
    about 3 MB), whatever the file's size."""
    peaks = {}
    for n in (2_000, 10_000):
        export = write_export(tmp_path / f"m{n}.json", n)
        conn = db.connect(tmp_path / f"m{n}.sqlite")
        try:
            tracemalloc.start()
            with export.open() as fp:
                entries = bulk_import.iter_entries(fp.read, wrapper="devices")
                bulk_import.import_entries(conn, "devices", entries, chunk_rows=1000)
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            conn.close()
        print(
            f"\n{n} devices ({export.stat().st_size / 1e6:.1f} MB file): peak {peaks[n] / 1e6:.1f} MB traced"
        )
    assert peaks[10_000] < 1024 * 1024  # the file alone is 1.5 MB, its entries as objects far more
    assert peaks[10_000] < 1.5 * peaks[2_000]


# --- the fast key check -------------------------------------------------------------------------------

SEEDS = st.binary(min_size=32, max_size=32)


def reference(raw: bytes) -> bool:
    try:
        keys.check_public_key(raw)
    except ValueError:
        return False
    return True


def fast(raw: bytes) -> bool:
    try:
        bulk_import.check_public_key(raw)
    except ValueError:
        return False
    return True


@settings(max_examples=40, deadline=None)
@given(SEEDS, st.sampled_from(SMALL_ORDER[2:5]))  # of order 2 and 8 (not the identity)
def test_fast_check_agrees_on_keys_and_mixed_points(seed: bytes, torsion: str) -> None:
    pk = crypto_sign_seed_keypair(seed)[0]
    assert fast(pk) and reference(pk)
    mixed = crypto_core_ed25519_add(pk, bytes.fromhex(torsion))  # outside the prime-order subgroup
    assert not fast(mixed) and not reference(mixed)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=30, max_size=33))
def test_fast_check_agrees_on_any_bytes(raw: bytes) -> None:
    assert fast(raw) == reference(raw)


def test_fast_check_on_the_edge_keys() -> None:
    for hex_key in SMALL_ORDER:
        assert not fast(bytes.fromhex(hex_key)) and not reference(bytes.fromhex(hex_key))
    non_canonical = (2**255 - 19 + 1).to_bytes(32, "little")  # y = p + 1
    assert not fast(non_canonical) and not reference(non_canonical)
    assert fast(sim_device(3).public) and reference(sim_device(3).public)
