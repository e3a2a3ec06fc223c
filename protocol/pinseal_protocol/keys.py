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


def public_key_bytes(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of a loaded key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)
