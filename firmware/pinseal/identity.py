# Device identity (docs/protocol.md §1): the Ed25519 key is created here, on the device, from os.urandom, and
# stored in one file on the board's flash. Nothing in the firmware prints, sends or exports the seed: only
# the public key and the key id leave the device. The public key is stored beside the seed so that tools can
# read it without the (slow) fixed-base multiplication, and is checked against the seed when the key loads.
import hashlib
import os

from micropython import const

KEY_ID_SIZE = const(16)
_PUBLIC_KEY_SIZE = const(32)
_SEED_SIZE = const(32)
SEED_PATH = "/key.seed"
PUBLIC_PATH = "/key.pub"


class IdentityError(Exception):
    pass


def key_id(public_key):
    """First 16 bytes of SHA-256 over the raw 32-byte Ed25519 public key."""
    if len(public_key) != _PUBLIC_KEY_SIZE:
        raise ValueError("key_id: an Ed25519 public key has 32 bytes")
    return hashlib.sha256(public_key).digest()[:KEY_ID_SIZE]


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def has_key(seed_path=SEED_PATH):
    return exists(seed_path)


def public_key(public_path=PUBLIC_PATH):
    """The stored public key, or None before the key exists."""
    try:
        with open(public_path, "rb") as f:
            pk = f.read()
    except OSError:
        return None
    if len(pk) != _PUBLIC_KEY_SIZE:
        raise IdentityError("%s is damaged" % public_path)
    return pk


def _write_atomic(path, data):
    # write a temporary file, then rename: littlefs renames atomically, so a power cut leaves the old file
    # or the new one, never a half-written key
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


async def create(seed_path=SEED_PATH, public_path=PUBLIC_PATH):
    """Create the device key (refuses if one exists) and return its SigningKey."""
    from pinseal.crypto.backend import SigningKey

    if exists(seed_path):
        raise IdentityError("a key exists already; delete it deliberately to make a new one")
    seed = os.urandom(_SEED_SIZE)
    if len(seed) != _SEED_SIZE or seed == bytes(_SEED_SIZE):
        raise IdentityError("os.urandom gave no usable randomness")
    key = await SigningKey.from_seed_async(seed)
    # the public key first: a seed without its public key is recovered by load(), the reverse is not
    _write_atomic(public_path, key.public_key)
    _write_atomic(seed_path, seed)
    return key


async def load(seed_path=SEED_PATH, public_path=PUBLIC_PATH):
    """The device's SigningKey from flash; rewrites a missing or wrong public key file from the seed."""
    from pinseal.crypto.backend import SigningKey

    try:
        with open(seed_path, "rb") as f:
            seed = f.read()
    except OSError:
        raise IdentityError("no device key (enroll the board first)")
    if len(seed) != _SEED_SIZE:
        raise IdentityError("%s is damaged" % seed_path)
    key = await SigningKey.from_seed_async(seed)
    try:
        stored = public_key(public_path)
    except IdentityError:
        stored = None
    if stored != key.public_key:
        _write_atomic(public_path, key.public_key)
    return key
