# Runs on pinseal's QEMU image (MPS2-AN385 with _pinseal_ed25519), driven by
# hil_tests/tests/test_qemu_crypto.py: the host copies pinseal/crypto onto the board's flash and a vectors
# file beside it, then runs this script with PATH_NAME set (the host prepends `PATH_NAME = "native"` or
# `"pure"`). Not a VM test module.
#
# The pure path is forced by importing pinseal.crypto.ed25519 itself: pinseal.crypto.backend would pick the
# native module on this image (and the script checks that it does).
#
# /vectors.txt, one case a line, hex fields:
#   rfc NAME SEED PUBLIC_KEY MESSAGE SIGNATURE   (RFC 8032 section 7.1: key, signature, verify, verify of
#                                                  another message)
#   vfy ID EXPECT PUBLIC_KEY MESSAGE SIGNATURE    (verify only; EXPECT 1 or 0; Wycheproof and edge cases)
# Prints "qemu_crypto: {json}": the failures, every verify verdict in file order (for the host to compare
# the two paths case by case) and the instruction counts (ticks_us under -icount shift=0 is k instructions).
import json
import time

from pinseal.crypto import backend

if PATH_NAME == "native":  # noqa: F821  (set by the host)
    from pinseal.crypto import ed25519_native as mod
else:
    from pinseal.crypto import ed25519 as mod


def h(s):
    return bytes.fromhex(s) if s != "-" else b""


wrong = []
verdicts = []
rfc = 0
ticks = {"sign": 0, "verify": 0}
with open("/vectors.txt") as f:
    for line in f:
        kind, name, a, b, c, d = line.split()
        if kind == "rfc":
            rfc += 1
            key = mod.SigningKey(h(a))
            if key.public_key != h(b):
                wrong.append(name + ": public key")
            t0 = time.ticks_us()
            sig = key.sign(h(c))
            t1 = time.ticks_us()
            ok = mod.verify(h(b), h(c), h(d))
            t2 = time.ticks_us()
            ticks["sign"] += time.ticks_diff(t1, t0)
            ticks["verify"] += time.ticks_diff(t2, t1)
            if sig != h(d):
                wrong.append(name + ": signature")
            if not ok:
                wrong.append(name + ": verify")
            if mod.verify(h(b), h(c) + b"\x00", h(d)):
                wrong.append(name + ": verify of another message")
        else:
            got = mod.verify(h(b), h(c), h(d))
            verdicts.append(1 if got else 0)
            if got != (a == "1"):
                wrong.append(name)
print(
    "qemu_crypto:",
    json.dumps(
        {
            "path": PATH_NAME,  # noqa: F821
            "backend_native": backend.NATIVE,
            "rfc8032": rfc,
            "verify_cases": len(verdicts),
            "wrong": wrong,
            "verdicts": "".join(str(v) for v in verdicts),
            "rfc8032_ticks": ticks,
        }
    ),
)
