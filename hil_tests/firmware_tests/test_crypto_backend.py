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
