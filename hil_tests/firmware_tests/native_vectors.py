# Runs on MicroPython's unix port built with the native module (make native-unix), driven by
# hil_tests/tests/test_native_ed25519.py; not a VM test module (the VM has no native module).
#
#   micropython native_vectors.py WYCHEPROOF_JSON
#
# Checks, on the same interpreter, the native path (pinseal.crypto.backend -> ed25519_native ->
# _pinseal_ed25519) and the pure-Python path (pinseal.crypto.ed25519) against RFC 8032 section 7.1 (the
# vectors of test_ed25519.py) and every Wycheproof Ed25519 test, and times both; prints one line
# "native_vectors: {json}" for the host to judge. Failures are listed in it, never raised half-way.
import asyncio
import json
import sys
import time

# The selector first, alone: on a native image it must not load the pure signer (RAM on a board).
from pinseal.crypto import backend

selector_loaded = sorted(m for m in sys.modules if m.startswith("pinseal.crypto"))
_key = backend.SigningKey(bytes(range(32)))
_key.sign(b"warm")
after_sign_loaded = sorted(m for m in sys.modules if m.startswith("pinseal.crypto"))

import _pinseal_ed25519 as raw  # noqa: E402

from pinseal.crypto import ed25519 as pure  # noqa: E402
from pinseal.crypto import ed25519_native as native  # noqa: E402
from pinseal.crypto.sha512 import sha512 as pure_sha512  # noqa: E402
from test_ed25519 import RFC8032  # noqa: E402  (the firmware VM test's vectors, one copy)

PATHS = (("native", native), ("pure", pure))


def h(s):
    return bytes.fromhex(s)


def rfc8032(mod):
    wrong = []
    for name, sk, pk, msg, sig in RFC8032:
        key = mod.SigningKey(h(sk))
        if key.public_key != h(pk):
            wrong.append(name + ": public key")
        if key.sign(h(msg)) != h(sig):
            wrong.append(name + ": signature")
        if not mod.verify(h(pk), h(msg), h(sig)):
            wrong.append(name + ": verify")
        if mod.verify(h(pk), h(msg) + b"\x00", h(sig)):
            wrong.append(name + ": verify of another message")
    return {"cases": len(RFC8032), "wrong": wrong}


def wycheproof(mod, doc):
    n = 0
    wrong = []
    verdicts = []
    for group in doc["testGroups"]:
        pk = h(group["publicKey"]["pk"])
        for t in group["tests"]:
            n += 1
            got = mod.verify(pk, h(t["msg"]), h(t["sig"]))
            verdicts.append(got)
            if got != (t["result"] == "valid"):
                wrong.append(t["tcId"])
    return {"cases": n, "declared": doc["numberOfTests"], "wrong": wrong}, verdicts


def sha512_agrees():
    wrong = []
    for n in (0, 1, 111, 112, 127, 128, 129, 239, 240, 255, 256, 1000):
        msg = bytes((i * 7 + n) & 255 for i in range(n))
        p = pure_sha512(msg).digest()
        if raw.sha512(msg) != p:
            wrong.append(n)
        cut = n // 3
        if raw.sha512(msg[:cut], memoryview(msg)[cut:], b"") != p:
            wrong.append("parts %d" % n)
    return wrong


def api_agrees():
    """The wrapper behaves as the pure module where callers can tell: parts, async forms, bad input."""
    wrong = []
    seed = bytes(range(32))
    pk = pure.SigningKey(seed)
    nk = native.SigningKey(seed)
    msg = bytes((i * 31 + 7) & 255 for i in range(1100))
    whole = nk.sign(msg)
    if whole != pk.sign(msg):
        wrong.append("1100-byte message")
    for cut in (0, 1, 127, 128, 129, 1100):
        if nk.sign(msg[:cut], memoryview(msg)[cut:]) != whole:
            wrong.append("parts at %d" % cut)

    async def forms():
        key = await backend.SigningKey.from_seed_async(seed)
        sig = await key.sign_async(b"head", b"payload")
        return key.public_key, sig, await backend.verify_async(key.public_key, b"headpayload", sig)

    apk, asig, ok = asyncio.run(forms())
    if (apk, asig, ok) != (pk.public_key, pk.sign(b"headpayload"), True):
        wrong.append("async forms")
    from pinseal.crypto.steps import run

    sig = pk.sign(b"abc")
    if run(nk.sign_steps(b"abc")) != sig or not run(native.verify_steps(nk.public_key, b"abc", sig)):
        wrong.append("step forms")
    for args in (
        (nk.public_key, b"abc", sig[:63]),
        (nk.public_key[:31], b"abc", sig),
        (None, b"abc", sig),
        (nk.public_key, None, sig),
        (12345, b"abc", sig),
        (nk.public_key, b"abc", bytes(64)),
    ):
        if native.verify(*args) is not False or pure.verify(*args) is not False:
            wrong.append("bad input %r" % (args,))
    try:
        native.SigningKey(bytes(31))
        wrong.append("31-byte seed accepted")
    except ValueError:
        pass
    return wrong


def random_agreement(n):
    """n keys and messages from a SHA-512 chain: native and pure sign alike, and agree on verifying each
    signature and a copy with one bit flipped (in R, S or the message), which exercises the verifier's
    scalar recoding on challenges no vector chose."""
    wrong = []
    state = b"pinseal native vs pure"
    for i in range(n):
        state = raw.sha512(state)
        seed, msg = state[:32], state[32 : 32 + (state[63] % 32)]
        pk = pure.SigningKey(seed)
        sig = native.SigningKey(seed).sign(msg)
        if sig != pk.sign(msg):
            wrong.append("sign %d" % i)
        bad = bytearray(sig)
        bad[state[62] % 64] ^= 1 << (state[61] % 8)
        for s, m in ((sig, msg), (bytes(bad), msg), (sig, msg + b"!")):
            if native.verify(pk.public_key, m, s) != pure.verify(pk.public_key, m, s):
                wrong.append("verify %d" % i)
        if not native.verify(pk.public_key, msg, sig):
            wrong.append("valid %d" % i)
    return {"cases": n, "wrong": wrong}


def timing(mod, reps):
    name, sk, pk, msg, sig = RFC8032[2]
    key = mod.SigningKey(h(sk))
    msg, sig, pk = h(msg), h(sig), h(pk)
    t0 = time.ticks_us()
    for _ in range(reps):
        key.sign(msg)
    t1 = time.ticks_us()
    for _ in range(reps):
        mod.verify(pk, msg, sig)
    t2 = time.ticks_us()
    return {
        "sign_ms": time.ticks_diff(t1, t0) / reps / 1000,
        "verify_ms": time.ticks_diff(t2, t1) / reps / 1000,
    }


def main():
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    out = {
        "native": backend.NATIVE,
        "selector_loaded": selector_loaded,
        "after_sign_loaded": after_sign_loaded,
        "sha512_wrong": sha512_agrees(),
        "api_wrong": api_agrees(),
    }
    verdicts = {}
    for name, mod in PATHS:
        out["rfc8032_" + name] = rfc8032(mod)
        out["wycheproof_" + name], verdicts[name] = wycheproof(mod, doc)
    out["random"] = random_agreement(100)
    out["paths_disagree"] = [
        i for i, (a, b) in enumerate(zip(verdicts["native"], verdicts["pure"])) if a != b
    ]
    out["timing_native"] = timing(native, 50)
    out["timing_pure"] = timing(pure, 3)
    print("native_vectors:", json.dumps(out))


main()
