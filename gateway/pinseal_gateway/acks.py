"""Signed acks (docs/protocol.md §5), built fast.

An ack has one fixed shape, so its deterministic CBOR is assembled from precomputed pieces instead of
going through the generic encoder: at thousands of acks per second the generic path costs more than
the Ed25519 signature, which libsodium computes (`pinseal_protocol.sodium`, twice OpenSSL's speed, the
same deterministic bytes). `sign_ack` here produces exactly the bytes of `pinseal_protocol.ack.sign_ack`
(a test checks that over random inputs), so devices verify them with the reference code.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_protocol import cose, dcbor, keys, rejection, sodium
from pinseal_protocol.bundle import protected_header


def _bstr(data: bytes) -> bytes:
    return dcbor.head(2, len(data)) + data


def _uint(value: int) -> bytes:
    return dcbor.head(0, value)


class AckSigner:
    """Signs acks with the gateway key; holds the encoded protected header and fixed prefixes."""

    def __init__(self, gateway_key: Ed25519PrivateKey) -> None:
        self._key = sodium.Signer(gateway_key)  # libsodium: the same signature bytes, half the time
        self.kid = keys.key_id(keys.public_key_bytes(gateway_key))
        protected = dcbor.encode(protected_header(self.kid))
        self._protected_bstr = _bstr(protected)
        # Sig_structure = ["Signature1", protected, h'', payload] (RFC 9052 §4.4)
        self._sig_prefix = dcbor.head(4, 4) + dcbor.encode("Signature1") + self._protected_bstr + _bstr(b"")
        # tag 18, array of 4: protected, {} (empty unprotected map), payload, signature
        self._msg_prefix = (
            dcbor.head(6, cose.TAG_COSE_SIGN1) + dcbor.head(4, 4) + self._protected_bstr + b"\xa0"
        )

    def payload(self, device: bytes, seq: int, bundle_hash: bytes, time: int) -> bytes:
        """The deterministic ack payload {1: 1, 2: device, 3: seq, 4: bundle, 5: time}."""
        if len(device) != 16 or len(bundle_hash) != 32:
            raise ValueError("device is a 16-byte key id, bundle a 32-byte SHA-256")
        return b"".join(
            (
                b"\xa5\x01\x01\x02\x50",
                device,
                b"\x03",
                _uint(seq),
                b"\x04\x58\x20",
                bundle_hash,
                b"\x05",
                _uint(time),
            )
        )

    def sign(self, device: bytes, seq: int, bundle_hash: bytes, time: int) -> bytes:
        """The ack bytes for `device`: `seq` its contiguous stored sequence, `time` the commit time."""
        return self._sign_payload(self.payload(device, seq, bundle_hash, time))

    def sign_rejection(
        self, device: bytes, bundle_hash: bytes, time: int, reason: str, next_seq: int
    ) -> bytes:
        """A signed rejection (docs/protocol.md §5.1): rare, so its payload takes the generic encoder."""
        payload = rejection.encode_payload(
            device=device, bundle_hash=bundle_hash, time=time, reason=reason, next_seq=next_seq
        )
        return self._sign_payload(payload)

    def _sign_payload(self, payload: bytes) -> bytes:
        payload_bstr = _bstr(payload)
        signature = self._key.sign(self._sig_prefix + payload_bstr)
        return self._msg_prefix + payload_bstr + _bstr(signature)


def ack_topic(device: bytes) -> str:
    return f"pinseal/v1/{device.hex()}/ack"
