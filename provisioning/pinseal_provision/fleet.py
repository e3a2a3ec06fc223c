"""The fleet key: the owner's Ed25519 key that signs device certificates.

It is a file holding the raw 32-byte seed (RFC 8032 §5.1.5), like the gateway key, created with
O_CREAT|O_EXCL and mode 0600, so it is never readable by others (not even for an instant) and never
overwritten: every certificate issued so far is checked against its public key, so losing or replacing it
orphans the fleet. Back it up offline.

**HSM / PKCS#11 instead of a file.** Everything here needs only `sign(message) -> 64-byte signature`
and the public key (the `pinseal_protocol.cose.Signer` protocol). A token-held key replaces `load()` by an
object with those two members, e.g. with python-pkcs11: open a session with the user PIN, find the private
key by label (`CKK_EC_EDWARDS`, made on the token with `CKM_EC_EDWARDS_KEY_PAIR_GEN` and
`CKA_EXTRACTABLE=false`) and sign with mechanism `CKM_EDDSA` (PKCS#11 3.0; SoftHSM2 2.6+ has it). The public
key is the token's `CKA_EC_POINT` (a DER OCTET STRING around the 32 raw bytes). Nothing else in the tool
changes; see docs/provisioning.md.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_protocol import keys
from pinseal_provision.errors import BadInput, FleetKeyMissing

SEED_SIZE = 32


@dataclass(frozen=True)
class FleetKey:
    """A signer with its public key and key id (docs/protocol.md §1: SHA-256(public key)[:16])."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> bytes:
        return keys.public_key_bytes(self.private_key)

    @property
    def key_id(self) -> bytes:
        return keys.key_id(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def create(path: Path) -> FleetKey:
    """Create the fleet key file (0600); refuses to overwrite an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization

    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise BadInput(
            f"a fleet key exists already at {path}; refusing to overwrite it",
            "every certificate issued so far depends on it: keep it. For a new fleet, use another path",
        ) from exc
    try:
        os.write(fd, seed)
        os.fsync(fd)
    finally:
        os.close(fd)
    return FleetKey(key)


def load(path: Path | None) -> FleetKey:
    """The fleet key from its file; refuses files others can read."""
    if path is None:
        raise FleetKeyMissing(
            "no fleet key given",
            "pass --fleet-key FILE (create one once with `pinseal-provision fleet init`)",
        )
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise FleetKeyMissing(
            f"no fleet key at {path}",
            f"create it once with `pinseal-provision fleet init --fleet-key {path}` (and back it up), "
            "or point --fleet-key at the existing one",
        ) from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise FleetKeyMissing(
            f"fleet key {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o})",
            f"chmod 600 {path} (and consider the key compromised if others could read it)",
        )
    seed = path.read_bytes()
    if len(seed) != SEED_SIZE:
        raise FleetKeyMissing(f"{path} is not a fleet key (expected {SEED_SIZE} bytes, found {len(seed)})")
    return FleetKey(keys.load_private_key(seed))
