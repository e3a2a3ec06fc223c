# The device key: made on the device from os.urandom, stored in one file, loaded back to the same key; its
# public key file repaired from the seed; a second create refused. Runs in the VM's in-memory filesystem.
import os

from pinseal import identity


def _clean(seed, pub):
    for p in (seed, pub, seed + ".tmp", pub + ".tmp"):
        try:
            os.remove(p)
        except OSError:
            pass


async def test_create_then_load_gives_the_same_key():
    seed, pub = "/t_key.seed", "/t_key.pub"
    _clean(seed, pub)
    assert not identity.has_key(seed)
    made = await identity.create(seed, pub)
    assert identity.has_key(seed)
    assert identity.public_key(pub) == made.public_key
    loaded = await identity.load(seed, pub)
    assert loaded.public_key == made.public_key
    assert loaded.sign(b"msg") == made.sign(b"msg")
    _clean(seed, pub)


async def test_a_second_create_is_refused():
    seed, pub = "/t2_key.seed", "/t2_key.pub"
    _clean(seed, pub)
    await identity.create(seed, pub)
    try:
        await identity.create(seed, pub)
    except identity.IdentityError:
        pass
    else:
        raise AssertionError("a key was overwritten")
    _clean(seed, pub)


async def test_a_damaged_public_key_file_is_rewritten_from_the_seed():
    seed, pub = "/t3_key.seed", "/t3_key.pub"
    _clean(seed, pub)
    made = await identity.create(seed, pub)
    with open(pub, "wb") as f:
        f.write(b"short")
    loaded = await identity.load(seed, pub)
    assert loaded.public_key == made.public_key
    assert identity.public_key(pub) == made.public_key
    _clean(seed, pub)


async def test_no_key_is_a_clear_error():
    try:
        await identity.load("/absent.seed", "/absent.pub")
    except identity.IdentityError as e:
        assert "enroll" in str(e)
    else:
        raise AssertionError("no error without a key")
