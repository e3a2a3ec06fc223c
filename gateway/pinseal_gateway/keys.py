"""The gateway's Ed25519 key and other secret files (docs/gateway.md "Keys").

The key file holds the raw 32-byte Ed25519 seed (RFC 8032 §5.1.5), nothing else: the same form the
protocol codec loads (`pinseal_protocol.keys.load_private_key`), trivially backed up and checked.
Secret files are created with `os.open(..., O_EXCL, 0o600)`, so they are never readable by others,
not even for the instant between create and chmod, and an existing key is never overwritten: a
replaced gateway key would make every device reject the gateway's acks.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from pinseal_protocol import keys


class KeyFileError(Exception):
    """The key (or another secret) file is missing, unsafe (group/world-accessible) or malformed."""


def write_secret(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 (in a folder created 0700 if missing: the data folder also holds the
    database) and write `data`; refuses to overwrite an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} exists; refusing to overwrite it") from exc
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_secret(path: Path) -> bytes:
    """Read a secret file, refusing one that group or others may read or write."""
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise KeyFileError(
            f"{path} does not exist (set the gateway up with `pinseal-gateway init`, or make the key "
            "alone with `pinseal-gateway keygen`)"
        ) from exc
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise KeyFileError(
            f"{path} has mode {stat.S_IMODE(info.st_mode):04o}; it must not be group/world accessible "
            f"(chmod 600 {path})"
        )
    return path.read_bytes()


def create_gateway_key(path: Path) -> Ed25519PrivateKey:
    """Generate a new gateway key and store its seed at `path` (0600, never overwriting)."""
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    write_secret(path, seed)
    return key


def load_gateway_key(path: Path) -> Ed25519PrivateKey:
    """Load the gateway key, refusing an unsafe or malformed file."""
    seed = read_secret(path)
    if len(seed) != keys.SEED_SIZE:
        raise KeyFileError(f"{path} holds {len(seed)} bytes, not a {keys.SEED_SIZE}-byte Ed25519 seed")
    return keys.load_private_key(seed)


def gateway_kid(key: Ed25519PrivateKey) -> bytes:
    return keys.key_id(keys.public_key_bytes(key))
