# Native (_pinseal_ed25519) against pure-Python (pinseal.crypto.ed25519) Ed25519 on a real MicroPython port,
# for the figures in firmware/native/README.md. Freeze it with the pure signer's modules into an image built
# with USER_C_MODULES=firmware/native (QEMU MPS2_AN385 under -icount shift=0: ticks_us = k instructions;
# rp2040js: ticks_us = a Pico's microseconds), then `import ed25519_native_bench` at the REPL.
# Prints "BENCH <name> <ticks_us>" lines, then "BENCH done".
import time

import _pinseal_ed25519 as n  # pyright: ignore[reportMissingImports]
from pinseal.crypto import ed25519 as pure

seed = bytes(range(32))
msg = bytes(range(200))  # about a one-reading bundle's Sig_structure


def t(name, f):
    t0 = time.ticks_us()
    r = f()
    print("BENCH", name, time.ticks_diff(time.ticks_us(), t0))
    return r


pk = t("native_public_key", lambda: n.public_key(seed))
sk = seed + pk
sig = t("native_sign", lambda: n.sign(sk, msg))
t("native_sign_seed_only", lambda: n.sign(seed, msg))
assert t("native_verify", lambda: n.verify(pk, msg, sig))
t("native_sha512_1k", lambda: n.sha512(bytes(1024)))
key = t("pure_key", lambda: pure.SigningKey(seed))
assert t("pure_sign", lambda: key.sign(msg)) == sig
assert t("pure_verify", lambda: pure.verify(pk, msg, sig))
print("BENCH done")
