# pinseal.crypto.backend in the MicroPython VM, which is stock MicroPython (no _pinseal_ed25519, like the
# official ESP32 image): the selector must fall back to the pure-Python signer, load nothing of the native
# wrapper, and give callers the pure module's functions themselves. The native path is tested on the unix
# port (hil_tests/tests/test_native_ed25519.py) where an image with the module can be built.
import sys

from pinseal.crypto import backend


def test_stock_micropython_has_no_native_module():
    try:
        import _pinseal_ed25519  # noqa: F401  # pyright: ignore[reportMissingImports]
    except ImportError:
        return
    raise AssertionError("the VM has _pinseal_ed25519: this test no longer proves the fallback")


def test_selector_falls_back_to_the_pure_signer():
    from pinseal.crypto import ed25519

    assert backend.NATIVE is False
    assert backend.impl is ed25519
    assert backend.SigningKey is ed25519.SigningKey
    assert backend.verify is ed25519.verify
    assert backend.verify_async is ed25519.verify_async
    assert backend.use_comb is ed25519.use_comb
    assert "pinseal.crypto.ed25519_native" not in sys.modules


async def test_fallback_signs_and_verifies_through_the_selector():
    # RFC 8032 section 7.1 TEST 2, through the API the firmware's callers use (identity, cose)
    seed = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
    sig = bytes.fromhex(
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
    )
    key = await backend.SigningKey.from_seed_async(seed)
    assert await key.sign_async(b"", b"\x72") == sig
    assert await backend.verify_async(key.public_key, b"\x72", sig)
    assert not backend.verify(key.public_key, b"\x73", sig)


class _FakeNative:
    """_pinseal_ed25519's API over the pure signer, with the C module's argument checks: CI cannot build an
    image with the real module, so the selector's native branch and the ed25519_native wrapper are
    exercised here with this stand-in (the C module itself: hil_tests/tests/test_native_ed25519.py)."""

    calls = 0

    @staticmethod
    def public_key(seed):
        if len(seed) != 32:
            raise ValueError("seed must be 32 bytes")
        return _pure().SigningKey(seed).public_key

    @staticmethod
    def sign(key, *parts):
        if len(key) not in (32, 64):
            raise ValueError("key must be a 32-byte seed or 64 bytes seed || public key")
        _FakeNative.calls += 1
        return _pure().SigningKey(bytes(key[:32])).sign(*parts)

    @staticmethod
    def verify(public_key, msg, sig):
        if len(public_key) != 32 or len(sig) != 64:
            raise ValueError("bad length")
        return _pure().verify(public_key, msg, sig)


def _pure():
    from pinseal.crypto import ed25519

    return ed25519


async def test_selector_takes_a_native_module_when_the_image_has_one():
    saved = {
        name: sys.modules.pop(name, None)
        for name in ("pinseal.crypto.backend", "pinseal.crypto.ed25519_native")
    }
    sys.modules["_pinseal_ed25519"] = _FakeNative  # type: ignore
    try:
        # a fresh import (not the package's cached attribute), as at a native image's boot
        __import__("pinseal.crypto.backend")
        selected = sys.modules["pinseal.crypto.backend"]
        ed25519_native = sys.modules["pinseal.crypto.ed25519_native"]

        assert selected.NATIVE is True
        assert selected.impl is ed25519_native and selected.SigningKey is ed25519_native.SigningKey
        seed = bytes(range(32))
        pure_key = _pure().SigningKey(seed)
        key = await selected.SigningKey.from_seed_async(seed)
        assert key.public_key == pure_key.public_key
        before = _FakeNative.calls
        sig = await key.sign_async(b"head", b"payload")
        assert _FakeNative.calls == before + 1  # one native call, no slicing
        assert sig == pure_key.sign(b"headpayload") == key.sign(b"head", b"payload")
        assert await selected.verify_async(key.public_key, b"headpayload", sig)
        for bad in ((key.public_key[:31], b"x", sig), (key.public_key, b"x", sig[:63]), (None, b"x", sig)):
            assert selected.verify(*bad) is False, bad  # ValueError / TypeError from the module -> False
        try:
            selected.SigningKey(bytes(31))
            raise AssertionError("a 31-byte seed was accepted")
        except ValueError:
            pass
        selected.use_comb(2)  # accepted and meaningless on the native path
    finally:
        sys.modules.pop("_pinseal_ed25519", None)
        import pinseal.crypto

        for name, module in saved.items():
            sys.modules.pop(name, None)
            if module is not None:
                sys.modules[name] = module
                setattr(pinseal.crypto, name.rsplit(".", 1)[1], module)
