# Device identity (docs/protocol.md §1): a key id names an Ed25519 public key on the wire, in MQTT
# topics and in logs. Only the derivation lives here for now; key creation and storage come later.
import hashlib

from micropython import const

KEY_ID_SIZE = const(16)
_PUBLIC_KEY_SIZE = const(32)


def key_id(public_key):
    """First 16 bytes of SHA-256 over the raw 32-byte Ed25519 public key."""
    if len(public_key) != _PUBLIC_KEY_SIZE:
        raise ValueError("key_id: an Ed25519 public key has 32 bytes")
    return hashlib.sha256(public_key).digest()[:KEY_ID_SIZE]
