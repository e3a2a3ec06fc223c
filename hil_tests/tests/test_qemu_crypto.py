"""Both Ed25519 paths on the emulated Cortex-M3 (issue 16): pinseal's QEMU image with the native module
(`_pinseal_ed25519`, Monocypher underneath) and the firmware's pure-Python signer, on RFC 8032 section 7.1
(the five vectors of firmware_tests/test_ed25519.py), every Wycheproof Ed25519 case, and edge cases made here
on which a lenient verifier (cofactored, or accepting non-canonical encodings, as Monocypher's own
crypto_ed25519_check is) would differ from the strict one both paths promise. The two paths must agree case
by case. Then the native instruction counts under -icount shift=0, against the issue's budget.

The firmware's crypto package goes onto the board's littlefs flash with mpremote (as deploy would put it
there); hil_tests/firmware_tests/qemu_crypto.py runs on the board. Every subprocess is bounded, QEMU is
killed at teardown.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pinseal_build.locations import FIRMWARE_DIR
from pinseal_qemu import QemuBoard
from pinseal_qemu.image import REPO
from pinseal_vboard.vm import FIRMWARE_TESTS_DIR, VECTORS_DIR

MPREMOTE = REPO / ".venv" / "bin" / "mpremote"
WYCHEPROOF = VECTORS_DIR / "third_party" / "wycheproof" / "ed25519_test.json"
BOARD_SCRIPT = FIRMWARE_TESTS_DIR / "qemu_crypto.py"
# Everything both paths import (the pure signer's default comb takes all three tables).
CRYPTO_FILES = (
    *("__init__", "backend", "ed25519", "ed25519_native", "sha512", "steps"),
    *("comb_table", "comb_table_2", "comb_table_4"),
)
COPY_TIMEOUT_S = 60
RUN_TIMEOUT_S = {"native": 60, "pure": 240}
# The budget for a native one-reading seal on QEMU; the signature is most of it.
SEAL_BUDGET_INSTRUCTIONS = 5_000_000

# --------------------------------------------------------------------------- edge cases, made on the host
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
Point = tuple[int, int]
IDENTITY: Point = (0, 1)
# A point of order 8 (the small-order list of "Taming the many EdDSAs", Chalkias et al. 2020).
ORDER_8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")


def add(p: Point, q: Point) -> Point:
    """Affine Edwards addition (complete on Ed25519): slow and plain, for a handful of points."""
    (x1, y1), (x2, y2) = p, q
    t = D * x1 * x2 * y1 * y2 % P
    return (
        (x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P,
        (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P,
    )


def mul(k: int, p: Point) -> Point:
    out = IDENTITY
    while k:
        if k & 1:
            out = add(out, p)
        p, k = add(p, p), k >> 1
    return out


def decode(s: bytes) -> Point:
    y = int.from_bytes(s, "little") & ((1 << 255) - 1)
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == (-u) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    assert v * x * x % P == u % P, "not on the curve"
    if x & 1 != s[31] >> 7:
        x = P - x
    return x, y


def encode(p: Point) -> bytes:
    x, y = p
    return (y | (x & 1) << 255).to_bytes(32, "little")


BASE = decode((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))


def challenge(r: bytes, a: bytes, msg: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + a + msg).digest(), "little") % L


@functools.cache
def edge_cases() -> list[tuple[str, bool, bytes, bytes, bytes]]:
    """(name, valid, public key, message, signature): each is judged differently by a strict verifier (S < L,
    A canonical, cofactorless, R as an encoding) and a lenient one; the first is checked here to pass the
    cofactored equation, so that the case really discriminates."""
    a, r = 0x1234567 * 8 + (1 << 254), 0xABCDEF
    order_8 = decode(ORDER_8)
    assert mul(8, order_8) == IDENTITY and mul(4, order_8) != IDENTITY
    pk = encode(add(mul(a, BASE), order_8))  # [a]B plus a point of order 8
    rb = encode(mul(r, BASE))
    msg = next(m for m in (b"torsion %d" % i for i in range(64)) if challenge(rb, pk, m) % 8)
    k = challenge(rb, pk, msg)
    s = (r + k * a) % L
    sig = rb + s.to_bytes(32, "little")
    lhs = mul(8, mul(s, BASE))
    assert lhs == mul(8, add(decode(rb), mul(k, decode(pk)))), "cofactored equation should hold"
    assert encode(add(mul(s, BASE), mul(L - k, decode(pk)))) != rb, "cofactorless should fail"
    # A = the identity: [S]B - [k]A = [S]B, so S = r and R = [r]B pass any verifier that decodes A.
    identity_sig = rb + r.to_bytes(32, "little")
    noncanonical_identity = (P + 1).to_bytes(32, "little")  # y = p + 1 (= 1 mod p)
    signed_zero_x = (1 | 1 << 255).to_bytes(32, "little")  # y = 1, x = 0 with the sign bit set
    return [
        ("edge: public key with a torsion component (cofactored verifiers accept)", False, pk, msg, sig),
        ("edge: identity key encoded with y >= p", False, noncanonical_identity, b"m", identity_sig),
        ("edge: identity key with x = 0 and the sign bit set", False, signed_zero_x, b"m", identity_sig),
        ("edge: identity key, canonical (RFC 8032 decodes it)", True, encode(IDENTITY), b"m", identity_sig),
    ]


# --------------------------------------------------------------------------- the vectors file
def rfc8032() -> list[tuple[str, str, str, str, str]]:
    """The five RFC 8032 vectors, read from firmware_tests/test_ed25519.py (one copy in the repository): its
    literal assignments only (RFC8032 and the long messages it names), never its imports or tests."""
    tree = ast.parse((FIRMWARE_TESTS_DIR / "test_ed25519.py").read_text())
    wanted = {"MSG_1024", "SHA512_ABC", "RFC8032"}
    nodes = [
        n
        for n in tree.body
        if isinstance(n, ast.Assign) and any(getattr(t, "id", "") in wanted for t in n.targets)
    ]
    namespace: dict[str, Any] = {}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), "test_ed25519.py", "exec"), namespace)
    return namespace["RFC8032"]


@functools.cache
def verify_cases() -> list[tuple[str, bool, bytes, bytes, bytes]]:
    doc = json.loads(WYCHEPROOF.read_text())
    cases = [
        (
            f"wycheproof {t['tcId']}",
            t["result"] == "valid",
            bytes.fromhex(g["publicKey"]["pk"]),
            bytes.fromhex(t["msg"]),
            bytes.fromhex(t["sig"]),
        )
        for g in doc["testGroups"]
        for t in g["tests"]
    ]
    assert len(cases) == doc["numberOfTests"]
    return [*cases, *edge_cases()]


def vectors_text() -> str:
    def hx(b: bytes | str) -> str:
        b = bytes.fromhex(b) if isinstance(b, str) else b
        return b.hex() or "-"

    lines = [
        f"rfc {name.replace(' ', '_')} {hx(sk)} {hx(pk)} {hx(m)} {hx(s)}" for name, sk, pk, m, s in rfc8032()
    ]
    # Verify cases go by their index (case<i>): names with spaces would not survive the board's split().
    for i, (_name, valid, pk, msg, sig) in enumerate(verify_cases()):
        lines.append(f"vfy case{i} {int(valid)} {hx(pk)} {hx(msg)} {hx(sig)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the board
def mpremote(serial: str, *args: str, timeout: float) -> str:
    result = subprocess.run(
        [str(MPREMOTE), "connect", serial, *args], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QemuBoard]:
    """One board for the module, the crypto package and the vectors on its flash."""
    tmp = tmp_path_factory.mktemp("qemu_crypto")
    vectors = tmp / "vectors.txt"
    vectors.write_text(vectors_text())
    b = QemuBoard(tmp / "flash.img")
    b.start()
    try:
        assert b.serial_path is not None
        crypto = FIRMWARE_DIR / "pinseal" / "crypto"
        mpremote(
            b.serial_path,
            *("mkdir", ":/pinseal", "+", "mkdir", ":/pinseal/crypto", "+"),
            *("cp", str(FIRMWARE_DIR / "pinseal" / "__init__.py"), ":/pinseal/__init__.py", "+"),
            *("cp", *(str(crypto / f"{m}.py") for m in CRYPTO_FILES), ":/pinseal/crypto/", "+"),
            *("cp", str(vectors), ":/vectors.txt"),
            timeout=COPY_TIMEOUT_S,
        )
        yield b
    finally:
        b.stop()


def run_path(board: QemuBoard, path_name: str, tmp: Path) -> dict[str, Any]:
    script = tmp / f"qemu_crypto_{path_name}.py"
    script.write_text(f"PATH_NAME = {path_name!r}\n" + BOARD_SCRIPT.read_text())
    assert board.serial_path is not None
    out = mpremote(board.serial_path, "run", str(script), timeout=RUN_TIMEOUT_S[path_name])
    line = next((ln for ln in out.splitlines() if ln.startswith("qemu_crypto: ")), None)
    assert line is not None, out[-2000:]
    return json.loads(line.removeprefix("qemu_crypto: "))


@pytest.fixture(scope="module")
def reports(board: QemuBoard, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("scripts")
    return {name: run_path(board, name, tmp) for name in ("native", "pure")}


@pytest.mark.parametrize("path_name", ["native", "pure"])
def test_every_vector_on_the_path(reports: dict[str, dict[str, Any]], path_name: str) -> None:
    report = reports[path_name]
    assert report["backend_native"] is True, "the QEMU image must carry _pinseal_ed25519"
    assert report["rfc8032"] == 5
    assert report["verify_cases"] == len(verify_cases())
    names = [case[0] for case in verify_cases()]
    wrong = [names[int(w[4:])] if w.startswith("case") else w for w in report["wrong"]]
    assert wrong == []


def test_the_paths_agree_case_by_case(reports: dict[str, dict[str, Any]]) -> None:
    native, pure = reports["native"]["verdicts"], reports["pure"]["verdicts"]
    assert len(native) == len(verify_cases())
    assert native == pure


def test_native_is_the_fast_path(reports: dict[str, dict[str, Any]]) -> None:
    """Without -icount ticks are wall time, so only the order of magnitude is judged here."""
    native, pure = reports["native"]["rfc8032_ticks"], reports["pure"]["rfc8032_ticks"]
    assert native["sign"] * 5 < pure["sign"]
    assert native["verify"] * 5 < pure["verify"]


NATIVE_COUNT = """
import _pinseal_ed25519 as n, time
seed = bytes(range(32))
msg = bytes(range(200))  # about a one-reading bundle's Sig_structure (206-byte bundle)
def t(f):
    t0 = time.ticks_us(); r = f(); return r, time.ticks_diff(time.ticks_us(), t0)
pk, t_pk = t(lambda: n.public_key(seed))
sig, t_sign = t(lambda: n.sign(seed + pk, msg))
_, t_seed = t(lambda: n.sign(seed, msg))
ok, t_verify = t(lambda: n.verify(pk, msg, sig))
print("counts", t_pk, t_sign, t_seed, t_verify, ok)
"""


def test_native_instruction_counts(tmp_path: Path) -> None:
    """Under -icount shift=0, ticks_us() counts thousands of instructions: the figures repeat across boots
    (within a tick or two: where the timer's 1 µs edge falls) and a signature stays inside the issue's
    one-reading seal budget."""
    runs = []
    for _ in range(2):
        with QemuBoard(tmp_path / "flash.img", icount=True) as b:
            assert b.serial_path is not None
            out = mpremote(b.serial_path, "exec", NATIVE_COUNT, timeout=60)
        fields = out.split()
        assert fields[0] == "counts" and fields[-1] == "True", out
        runs.append([int(f) * 1000 for f in fields[1:5]])
    assert all(abs(a - b) <= 2000 for a, b in zip(runs[0], runs[1], strict=True)), runs
    public_key, sign, sign_seed_only, verify = runs[0]
    print(
        f"native instructions: public_key {public_key}, sign {sign}, sign (seed only) {sign_seed_only}, "
        f"verify {verify}"
    )
    assert sign < SEAL_BUDGET_INSTRUCTIONS
    assert verify < 2 * SEAL_BUDGET_INSTRUCTIONS
    assert sign_seed_only > sign  # the 64-byte key really skips deriving A
