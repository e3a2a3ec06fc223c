# COSE_Sign1 (RFC 9052) with EdDSA over Ed25519 only: sign a payload, parse a message strictly, verify
# it against a public key. Generic enough for the COSE WG examples (kid unprotected, other protected
# labels); `pinseal_kid()` adds the stricter shape of pinseal messages (docs/protocol.md §3, §5).
#
# Signing and verifying go through pinseal.crypto.backend (the image's native Ed25519, else the pure-Python
# one), imported only when first needed so that building and parsing messages do not pull it into RAM.
from micropython import const

from pinseal.wire import WireError
from pinseal.wire.cbor import TAG_COSE_SIGN1, Encoder, Tag, dumps, loads

ALG_EDDSA = const(-8)
HDR_ALG = const(1)
HDR_CRIT = const(2)
HDR_KID = const(4)

_KID_SIZE = const(16)
_ED25519_KEY_SIZE = const(32)
_ED25519_SIG_SIZE = const(64)
_ED448_KEY_SIZE = const(57)
_ED448_SIG_SIZE = const(114)

# ["Signature1", ...: array(4) and the context text, the same in every Sig_structure
_SIG1_PREFIX = b"\x84\x6aSignature1"


def protected_kid(kid):
    """The pinseal protected header {1: -8, 4: kid}, deterministically encoded."""
    if len(kid) != _KID_SIZE:
        raise ValueError("COSE: kid must have 16 bytes")
    return b"\xa2\x01\x27\x04\x50" + kid  # map(2), 1: -8, 4: bstr(16)


def _bstr_size(n):
    # the size of a byte string of n bytes, CBOR head included (n < 2**32 here)
    return n + (1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5)


def sign1_size(protected_len, payload_len, unprotected_len=1):
    """Size of the tagged COSE_Sign1 before signing (Ed25519): lets callers refuse oversize bundles
    without spending a signature on them."""
    return 2 + _bstr_size(protected_len) + unprotected_len + _bstr_size(payload_len) + 2 + _ED25519_SIG_SIZE


def _sig_structure_head(protected, payload_len, external_aad=b""):
    # the Sig_structure's bytes before the payload's own: it is signed as (head, payload), never copied
    enc = Encoder(len(_SIG1_PREFIX) + _bstr_size(len(protected)) + _bstr_size(len(external_aad)) + 5)
    enc.raw(_SIG1_PREFIX)
    enc.bstr(protected)
    enc.bstr(external_aad)
    enc.head(2, payload_len)
    return enc.value()


def sig_structure(protected, payload, external_aad=b""):
    """["Signature1", protected, external_aad, payload] (RFC 9052 §4.4), the bytes Ed25519 signs."""
    return _sig_structure_head(protected, len(payload), external_aad) + bytes(payload)


async def sign(signing_key, protected, payload, unprotected=None):
    """Signs payload; returns the tagged COSE_Sign1 bytes.

    protected: the encoded protected header (e.g. protected_kid(kid)); unprotected: a dict or None.
    signing_key: an object with sign_async(*parts) (the message is the parts' concatenation; yields to
    asyncio, preferred) or sign(msg). The Sig_structure is handed over as (head, payload), so a bundle's
    payload is not copied into a second buffer as large as itself while it is signed.
    """
    if hasattr(signing_key, "sign_async"):
        signature = await signing_key.sign_async(_sig_structure_head(protected, len(payload)), payload)
    else:
        signature = signing_key.sign(sig_structure(protected, payload))
    if len(signature) != _ED25519_SIG_SIZE:
        raise ValueError("COSE: signer returned a signature that is not Ed25519")
    enc = Encoder(sign1_size(len(protected), len(payload), len(dumps(unprotected)) if unprotected else 1))
    enc.tag(TAG_COSE_SIGN1)
    enc.array(4)
    enc.bstr(protected)
    enc.encode(unprotected if unprotected else {})
    enc.bstr(payload)
    enc.bstr(signature)
    return enc.value()


class Sign1:
    """A parsed COSE_Sign1: `protected` is the header's bytes as signed, `headers` what they decode to."""

    def __init__(self, protected, headers, unprotected, payload, signature):
        self.protected = protected
        self.headers = headers
        self.unprotected = unprotected
        self.payload = payload
        self.signature = signature

    def kid(self):
        kid = self.headers.get(HDR_KID)
        return self.unprotected.get(HDR_KID) if kid is None else kid


def _invalid(detail):
    return WireError("invalid_structure", detail)


def parse(data):
    """Parses a tagged COSE_Sign1 strictly; returns a Sign1. Does not verify the signature.

    Rejects (WireError): anything that is not deterministic CBOR, not tag 18 ("wrong_tag"), not four
    elements of the right types ("invalid_structure": also a detached payload, a label in both
    headers, a signature that is not 64 bytes), alg other than EdDSA in the protected header, crit,
    or an Ed448 signature ("unsupported_algorithm").
    """
    msg = loads(data)
    if type(msg) is not Tag or msg.tag != TAG_COSE_SIGN1:
        raise WireError("wrong_tag", "not a tagged COSE_Sign1 (tag 18)")
    parts = msg.value
    if type(parts) is not list or len(parts) != 4:
        raise _invalid("COSE_Sign1 is not an array of 4")
    protected, unprotected, payload, signature = parts
    if type(protected) is not bytes or type(unprotected) is not dict or type(signature) is not bytes:
        raise _invalid("COSE_Sign1 element of the wrong type")
    if type(payload) is not bytes:
        raise _invalid("payload is not a byte string (detached payloads are not supported)")
    # an empty byte string is the empty protected header (RFC 9052 §3)
    headers = loads(protected) if protected else {}
    if type(headers) is not dict:
        raise _invalid("protected header is not a map")
    for label in headers:
        if label in unprotected:
            raise _invalid("header label in both protected and unprotected")
    # alg must be protected; crit would oblige us to understand headers we do not know. Both are
    # "unsupported_algorithm", as in the host codec.
    alg = headers.get(HDR_ALG)
    if type(alg) is not int or alg != ALG_EDDSA:
        raise WireError("unsupported_algorithm", "alg is not EdDSA (-8) in the protected header")
    if HDR_CRIT in headers or HDR_CRIT in unprotected:
        raise WireError("unsupported_algorithm", "crit is not supported")
    # alg -8 names EdDSA without a curve: a 114-byte signature is Ed448, which this code does not do
    if len(signature) != _ED25519_SIG_SIZE:
        if len(signature) == _ED448_SIG_SIZE:
            raise WireError("unsupported_algorithm", "Ed448 is not supported")
        raise _invalid("signature is not 64 bytes")
    return Sign1(protected, headers, unprotected, payload, signature)


def pinseal_kid(msg):
    """The kid of a pinseal message, after checking its shape: the protected header is exactly
    {1: -8, 4: 16-byte kid} and the unprotected header is empty (docs/protocol.md §3, §7)."""
    kid = msg.headers.get(HDR_KID)
    if len(msg.headers) != 2 or type(kid) is not bytes or len(kid) != _KID_SIZE:
        raise _invalid("protected header must hold exactly alg and a 16-byte kid")
    if msg.unprotected:
        raise _invalid("unprotected header must be empty")
    return kid


async def verify(msg, public_key):
    """Checks msg's Ed25519 signature under public_key (32 bytes); raises WireError("bad_signature")
    if it does not verify, "unsupported_algorithm" for a key that is not Ed25519 (e.g. Ed448)."""
    if len(public_key) != _ED25519_KEY_SIZE:
        if len(public_key) == _ED448_KEY_SIZE:
            raise WireError("unsupported_algorithm", "Ed448 is not supported")
        raise WireError("unsupported_algorithm", "public key is not a 32-byte Ed25519 key")
    from pinseal.crypto import backend as ed25519

    tbs = sig_structure(msg.protected, msg.payload)
    if hasattr(ed25519, "verify_async"):
        ok = await ed25519.verify_async(public_key, tbs, msg.signature)
    else:
        ok = ed25519.verify(public_key, tbs, msg.signature)
    if not ok:
        raise WireError("bad_signature", "Ed25519 signature does not verify")
