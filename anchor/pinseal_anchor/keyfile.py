"""The anchoring key: a secp256k1 key (an EVM account) in a file only its owner can read.

Whoever holds this key can anchor roots in the network's name, so it is handled like the gateway's Ed25519
key: generated where it lives (never copied over the network), the file created 0600 with O_EXCL in one step
(no moment at which it exists world-readable), its folder 0700 when we create it, and a file that group or
others can read is refused rather than silently tightened: the key may already have leaked, which its owner
must decide about. The key is never logged or printed; only its address is.

File format: the 32-byte private key as 64 lowercase hex digits and a newline.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

KEY_SIZE = 32


class KeyFileError(ValueError):
    """The anchoring key file is missing, malformed or readable by others."""


def generate_key(path: Path | str) -> str:
    """Create a new anchoring key at `path` (file 0600, a new folder 0700); returns its address.

    Refuses to overwrite an existing file: replacing the key changes the anchoring address that every
    verifier has been told to trust.
    """
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
        os.chmod(path.parent, 0o700)  # mkdir's mode is filtered by the umask
    secret = secrets.token_bytes(KEY_SIZE)
    account = Account.from_key(secret)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} exists: an anchoring key is never overwritten") from exc
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is filtered by the umask too
        os.write(fd, (secret.hex() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return str(account.address)


def load_key(path: Path | str) -> LocalAccount:
    """The account of the key file at `path`; KeyFileError when missing, malformed or not private."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError as exc:
        raise KeyFileError(
            f"no anchoring key at {path} (create one with `anchor keygen --key {path}`)"
        ) from exc
    if mode & 0o077:
        raise KeyFileError(
            f"{path} is readable by group or others (mode {mode:04o}): the anchoring key may have leaked; "
            f"if it has not, `chmod 600 {path}`, else make a new key"
        )
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != KEY_SIZE:
        raise KeyFileError(f"{path} does not hold a {KEY_SIZE}-byte hex private key")
    return Account.from_key(secret)


def address_of(path: Path | str) -> str:
    """The checksummed address of the key file at `path`."""
    return str(load_key(path).address)
