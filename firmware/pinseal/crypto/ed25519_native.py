# Ed25519 through the image's native module (_pinseal_ed25519, firmware/native), with the API of the
# pure-Python pinseal.crypto.ed25519: SigningKey(seed) with public_key, sign / sign_async / sign_steps and
# from_seed_async; verify / verify_async / verify_steps; use_comb. Imported only by pinseal.crypto.backend,
# and only on an image that has the module, so a board never holds both implementations.
#
# A native signature or verification is one call of a few milliseconds to tens of milliseconds on a board
# (no big integers, no heap but its 64-byte result), so the async and step forms are that single call:
# there is nothing to slice, and awaiting once would only delay the result.
import _pinseal_ed25519 as _n  # pyright: ignore[reportMissingImports]  # only in pinseal's own images


class SigningKey:
    """An Ed25519 key from its 32-byte seed; the public key is derived once, in the constructor."""

    def __init__(self, seed):
        self.public_key = _n.public_key(seed)  # ValueError unless 32 bytes
        # seed || public key, the 64-byte secret key the module signs with without re-deriving A; the
        # public half is the one just derived, never one from outside (a mismatched one leaks the key).
        self._sk = bytes(seed) + self.public_key

    @classmethod
    async def from_seed_async(cls, seed):
        return cls(seed)

    def sign(self, *parts):
        """The RFC 8032 signature of the parts' concatenation (hashed where they lie, never joined)."""
        return _n.sign(self._sk, *parts)

    async def sign_async(self, *parts):
        return _n.sign(self._sk, *parts)

    def sign_steps(self, *parts):
        """Generator form, for callers written against the pure signer: one step, the signature its value."""
        return _n.sign(self._sk, *parts)
        yield  # makes this a generator


def verify(public_key, msg, sig):
    """True iff sig is a valid (strict RFC 8032) signature of msg by public_key; bad input gives False."""
    try:
        return _n.verify(public_key, msg, sig)
    except MemoryError:
        raise
    except Exception:  # wrong lengths (ValueError), not buffers (TypeError): as the pure path, False
        return False


async def verify_async(public_key, msg, sig):
    return verify(public_key, msg, sig)


def verify_steps(public_key, msg, sig):
    return verify(public_key, msg, sig)
    yield  # makes this a generator


def use_comb(subs):
    """The pure signer's table size has no meaning here; the same sizes are accepted, others refused."""
    if subs not in (1, 2, 4):
        raise ValueError("comb sub-combs: 1, 2 or 4")
