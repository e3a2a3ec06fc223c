# The device's half of enrollment, called by `pinseal-provision` over the raw REPL (the same calls work typed
# at the REPL). Each call prints one line "PINSEAL {json}" that the tool parses. The key is made here, on the
# device; the seed is never printed: info() and create_key() show the public key and key id only.
import json
import sys

from pinseal import board, identity, version

CERT_PATH = "/cert.cbor"


def _emit(obj):
    print("PINSEAL", json.dumps(obj))


def _unique_id():
    # "" where the port has no unique id: no machine module, or one without unique_id() (QEMU's ports/qemu)
    try:
        import machine

        return machine.unique_id().hex()
    except (ImportError, AttributeError):
        return ""


def describe():
    pk = identity.public_key()
    return {
        "has_key": identity.has_key(),
        "public_key": pk.hex() if pk else None,
        "key_id": identity.key_id(pk).hex() if pk else None,
        "unique_id": _unique_id(),
        "board": board.load().get("id", "unknown"),
        "firmware": version.FIRMWARE,
        "micropython": "%d.%d.%d" % sys.implementation.version[:3],
        "enrolled": identity.exists(CERT_PATH) and identity.exists("/config.json"),
    }


def info():
    _emit(describe())


async def create_key():
    """Make the device key if there is none; print what info() prints."""
    if not identity.has_key():
        await identity.create()
    else:
        await identity.load()  # checks the seed and repairs a missing public key file
    info()


async def self_test(nonce_hex):
    """Seal one reading plus the tool's nonce with the device key; print the bundle (hex) for the tool to
    verify."""
    from pinseal.sampler import Sampler
    from pinseal.wire import bundle

    bytes.fromhex(nonce_hex)  # only hex is accepted
    key = await identity.load()
    records = await Sampler(board.load()).reading()
    records = records + (("nonce", None, nonce_hex),)
    sealed = await bundle.seal(
        key, identity.key_id(key.public_key), 0, 0, bytes(16), (0, 0, 0, 0, 255), 0, [(0, records)]
    )
    _emit({"bundle": sealed.hex()})
