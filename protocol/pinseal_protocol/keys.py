"""Ed25519 keys and key ids (docs/protocol.md §1).

A key id is the first 16 bytes of SHA-256 over the raw 32-byte public key: short enough for the
one-reading size budget and for MQTT usernames, long enough that ids never collide by accident. The
hex form (32 lowercase digits) is what text contexts (topics, logs, file names) use.
"""

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KEY_ID_SIZE = 16
PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32


def key_id(public_key: bytes | Ed25519PublicKey) -> bytes:
    """The 16-byte key id of a raw 32-byte public key (or a loaded one)."""
    raw = public_key if isinstance(public_key, bytes) else public_key_bytes(public_key)
    if len(raw) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key has {PUBLIC_KEY_SIZE} bytes, not {len(raw)}")
    return hashlib.sha256(raw).digest()[:KEY_ID_SIZE]


def key_id_hex(public_key: bytes | Ed25519PublicKey) -> str:
    """The key id as 32 lowercase hex digits, for usernames, topics and logs."""
    return key_id(public_key).hex()


def parse_key_id_hex(text: str) -> bytes:
    """Inverse of `key_id_hex`; insists on the canonical lowercase form so ids compare as text too."""
    if len(text) != 2 * KEY_ID_SIZE or text != text.lower():
        raise ValueError(f"a key id is {2 * KEY_ID_SIZE} lowercase hex digits: {text!r}")
    return bytes.fromhex(text)


def load_private_key(seed: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from its raw 32-byte seed (RFC 8032 §5.1.5)."""
    if len(seed) != SEED_SIZE:
        raise ValueError(f"an Ed25519 seed has {SEED_SIZE} bytes, not {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from its raw 32-byte encoding."""
    if len(raw) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key has {PUBLIC_KEY_SIZE} bytes, not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


# Curve25519 in twisted Edwards form (RFC 8032 §5.1): field prime, d, the prime subgroup's order.
_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_L = 2**252 + 27742317777372353535851937790883648493
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decode_point(raw: bytes) -> tuple[int, int]:
    """RFC 8032 §5.1.3, strictly: a non-canonical y, or x = 0 with the sign bit set, is refused."""
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    sign = raw[31] >> 7
    if y >= _P:
        raise ValueError("not a canonical Ed25519 point encoding (y >= p)")
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P != 0:
        x = x * _SQRT_M1 % _P
        if (v * x * x - u) % _P != 0:
            raise ValueError("not a point on Ed25519")
    if x == 0 and sign:
        raise ValueError("not a canonical Ed25519 point encoding (x = 0 with the sign bit set)")
    return (_P - x if x & 1 != sign else x), y


Point = tuple[int, int, int, int]  # extended homogeneous coordinates (X : Y : Z : T), x = X/Z, y = Y/Z


def _add(a: Point, b: Point) -> Point:
    """RFC 8032 §5.1.4's addition, complete on Ed25519 (doubling too); no inversions, so [L]P is fast."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % _P
    bb = (y1 + x1) * (y2 + x2) % _P
    cc = 2 * _D * t1 * t2 % _P
    dd = 2 * z1 * z2 % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _multiply(n: int, point: Point) -> Point:
    result: Point = (0, 1, 1, 0)
    while n:
        if n & 1:
            result = _add(result, point)
        point = _add(point, point)
        n >>= 1
    return result


def _is_identity(point: Point) -> bool:
    x, y, z, _ = point
    return x % _P == 0 and (y - z) % _P == 0


def check_public_key(raw: bytes) -> bytes:
    """`raw` if it can be a device's or gateway's Ed25519 public key, else ValueError saying why.

    Registration calls this, once per key (it costs milliseconds, so verification does not): a
    small-order point (the all-zero key among them) is no signing key's public key, and under one some
    verifiers accept a signature for any message; a point outside the prime-order subgroup or a
    non-canonical encoding is no honest key either. OpenSSL loads all of these without complaint.
    """
    if len(raw) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key has {PUBLIC_KEY_SIZE} bytes, not {len(raw)}")
    x, y = _decode_point(raw)
    point = (x, y, 1, x * y % _P)
    if _is_identity(_multiply(8, point)):
        raise ValueError(f"a small-order Ed25519 point is not a public key: {raw.hex()}")
    if not _is_identity(_multiply(_L, point)):
        raise ValueError(
            f"an Ed25519 point outside the prime-order subgroup is not a public key: {raw.hex()}"
        )
    load_public_key(raw)
    return raw


def public_key_bytes(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of a loaded key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)
