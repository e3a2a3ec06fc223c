"""The firmware's generated constant tables are what the generator makes, and the generator is right.

The committed module must not drift from tools/pinseal_build/firmware_tables.py (a hand edit, or a changed
comb geometry without `make firmware-tables`); the generator's points are checked here against the curve
and against RFC 8032's public key for a known seed, computed through the table as the firmware's comb does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pinseal_build import firmware_tables as ft


def test_committed_comb_modules_are_the_generators_output() -> None:
    for path, source in ft.comb_module_sources(ft.comb_table()).items():
        assert path.read_text() == source, path
    assert ft.main(["--check"]) == 0


def test_comb_modules_hold_every_sub_comb_once() -> None:
    held = sorted(s for subs, _ in ft.COMB_MODULES.values() for s in subs)
    assert held == list(range(ft.SUBS))
    table = ft.comb_table()
    assert ft.sub_combs(table, (0, 1, 2, 3)) == table


def test_check_flags_a_stale_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = next(iter(ft.COMB_MODULES))
    stale = tmp_path / "comb_table.py"
    stale.write_text(first.read_text().replace("TABLE = (", "TABLE = (  # edited", 1))
    modules = dict(ft.COMB_MODULES)
    modules[stale] = modules.pop(first)
    monkeypatch.setattr(ft, "COMB_MODULES", modules)
    assert ft.main(["--check"]) == 1


def _affine_add(p1: ft.Point, p2: ft.Point) -> ft.Point:
    """Affine twisted Edwards addition (a = -1), complete for Ed25519."""
    (x1, y1), (x2, y2) = p1, p2
    t = ft.D * x1 * x2 * y1 * y2 % ft.P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, ft.P - 2, ft.P) % ft.P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, ft.P - 2, ft.P) % ft.P
    return x3, y3


def _entry(table: bytes, i: int) -> tuple[int, int, int]:
    o = i * ft.ENTRY_BYTES
    return tuple(int.from_bytes(table[o + 32 * k : o + 32 * k + 32], "little") for k in range(3))  # type: ignore[return-value]


def test_entries_are_curve_points_in_the_stored_form() -> None:
    table = ft.comb_table()
    assert len(table) == ft.SUBS * ft.ROW * ft.ENTRY_BYTES == 6144
    two_inv = pow(2, ft.P - 2, ft.P)
    for i in range(ft.SUBS * ft.ROW):
        yp, ym, t2 = _entry(table, i)
        y = (yp + ym) * two_inv % ft.P
        x = (yp - ym) * two_inv % ft.P
        assert (-x * x + y * y - 1 - ft.D * x * x * y * y) % ft.P == 0  # -x^2 + y^2 = 1 + d x^2 y^2
        assert t2 == 2 * ft.D * x * y % ft.P


def test_comb_digits_through_the_table_give_the_public_key() -> None:
    # The firmware's fixed-base multiplication, column by column in affine arithmetic, for RFC 8032 test 1's
    # expanded secret scalar: the result must be the public key `cryptography` derives from the seed.
    import hashlib

    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little") & ((1 << 254) - 8) | (1 << 254)
    k = a % ft.L
    if not k & 1:
        k += ft.L
    b = (k + (1 << (5 * ft.GAP)) - 1) >> 1  # bit i set <=> comb digit i is +1
    table = ft.comb_table()
    two_inv = pow(2, ft.P - 2, ft.P)
    acc: ft.Point = (0, 1)
    for c in range(ft.SPAN - 1, -1, -1):
        acc = _affine_add(acc, acc)
        for sub in range(ft.SUBS):
            bits = [(b >> (ft.GAP * t + ft.SPAN * sub + c)) & 1 for t in range(5)]
            index = sum(bits[t] << t for t in range(4))
            if not bits[4]:
                index ^= 15
            yp, ym, _ = _entry(table, sub * ft.ROW + index)
            x, y = (yp - ym) * two_inv % ft.P, (yp + ym) * two_inv % ft.P
            acc = _affine_add(acc, (x, y) if bits[4] else (-x % ft.P, y))
    x, y = acc
    encoded = (y | (x & 1) << 255).to_bytes(32, "little")
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    assert encoded == public.public_bytes(Encoding.Raw, PublicFormat.Raw)
