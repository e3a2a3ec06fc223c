# The Ed25519 this image has: the native module when the image was built with it (pinseal's QEMU and RP2
# images, firmware/native), else the pure-Python signer (stock MicroPython: ESP32 users on the official
# image, the WebAssembly VM). Callers import SigningKey, verify and verify_async from here and never know
# which ran. Only the chosen implementation is imported: the pure one is ~1,000 lines of bytecode that a
# board loading .mpy files keeps in its heap, and a native image must not pay for it.
try:
    import _pinseal_ed25519  # pyright: ignore[reportMissingImports]  # only in pinseal's own images

    NATIVE = True
    del _pinseal_ed25519
except ImportError:
    NATIVE = False

if NATIVE:
    from pinseal.crypto import ed25519_native as impl
else:
    from pinseal.crypto import ed25519 as impl

SigningKey = impl.SigningKey
verify = impl.verify
verify_async = impl.verify_async
use_comb = impl.use_comb
