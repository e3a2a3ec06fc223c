"""The device certificate: a CWT (RFC 8392) claims set in a COSE_Sign1 (RFC 9052), EdDSA, fleet-signed.

It binds the device's public key to what the board is, so that anyone holding the fleet public key (the
gateway, the network, an auditor) can check that a key id belongs to a board this owner provisioned, offline,
without asking the provisioning host. Encoding and signing reuse `pinseal_protocol` (deterministic CBOR,
COSE_Sign1 with alg -8), the same code that checks bundles, so there is one COSE implementation on the host.

```cddl
certificate = #6.18([ protected: bstr .cbor { 1 => -8, 4 => fleet-kid (bstr .size 16) },
                      unprotected: {}, payload: bstr .cbor claims, signature: bstr .size 64 ])
claims = {
    1 => tstr,                   ; iss: the fleet key id, 32 hex digits
    2 => tstr,                   ; sub: the device key id, 32 hex digits
    6 => uint,                   ; iat: issued at, seconds since the epoch
    8 => { 1 => COSE_Key },      ; cnf (RFC 8747): the device key, {1: 1 (OKP), -1: 6 (Ed25519), -2: x}
    "kid" => bstr .size 16,      ; the device key id (docs/protocol.md §1), as bytes
    "uid" => bstr,               ; machine.unique_id()
    "board" => tstr,             ; board profile id
    "fw" => tstr,                ; pinseal firmware version
    "mpy" => tstr,               ; MicroPython release
    "fleet" => bstr .size 16,    ; the fleet key id, as bytes
}
```
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pinseal_protocol import cose, dcbor, keys
from pinseal_protocol.errors import RejectedMessage

CLAIM_ISS, CLAIM_SUB, CLAIM_IAT, CLAIM_CNF = 1, 2, 6, 8
COSE_KEY, KTY, KTY_OKP, CRV, CRV_ED25519, X = 1, 1, 1, -1, 6, -2


class CertificateError(ValueError):
    """A certificate that does not verify or does not hold what a pinseal certificate holds."""


@dataclass(frozen=True)
class DeviceCertificate:
    public_key: bytes
    key_id: bytes
    unique_id: bytes
    board: str
    firmware: str
    micropython: str
    issued_at: int
    fleet_key_id: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "public_key": self.public_key.hex(),
            "key_id": self.key_id.hex(),
            "unique_id": self.unique_id.hex(),
            "board": self.board,
            "firmware": self.firmware,
            "micropython": self.micropython,
            "issued_at": self.issued_at,
            "fleet_key_id": self.fleet_key_id.hex(),
        }


def issue(
    signer: cose.Signer,
    fleet_public_key: bytes,
    *,
    public_key: bytes,
    unique_id: bytes,
    board: str,
    firmware: str,
    micropython: str,
    issued_at: int | None = None,
) -> bytes:
    """The certificate bytes (deterministic CBOR: the same inputs always give the same bytes)."""
    keys.check_public_key(public_key)  # a 32-byte Ed25519 key of the prime-order subgroup, or ValueError
    fleet_kid = keys.key_id(fleet_public_key)
    kid = keys.key_id(public_key)
    claims = {
        CLAIM_ISS: fleet_kid.hex(),
        CLAIM_SUB: kid.hex(),
        CLAIM_IAT: int(time.time()) if issued_at is None else issued_at,
        CLAIM_CNF: {COSE_KEY: {KTY: KTY_OKP, CRV: CRV_ED25519, X: public_key}},
        "kid": kid,
        "uid": unique_id,
        "board": board,
        "fw": firmware,
        "mpy": micropython,
        "fleet": fleet_kid,
    }
    protected = {cose.HEADER_ALG: cose.ALG_EDDSA, cose.HEADER_KID: fleet_kid}
    return cose.sign1(dcbor.encode(claims), signer, protected)


def verify(data: bytes, fleet_public_key: bytes) -> DeviceCertificate:
    """Check signature, deterministic encoding and consistency; return the certified fields."""
    try:
        message = cose.decode_sign1(bytes(data))
        signer_kid = cose.pinseal_kid(message)
        if signer_kid != keys.key_id(fleet_public_key):
            raise CertificateError(
                f"signed by fleet key {signer_kid.hex()}, not {keys.key_id_hex(fleet_public_key)}"
            )
        cose.verify_sign1(message, keys.load_public_key(fleet_public_key))
        claims = dcbor.decode(message.payload)
    except RejectedMessage as exc:
        raise CertificateError(f"not a valid certificate: {exc}") from exc
    try:
        public_key = claims[CLAIM_CNF][COSE_KEY][X]
        cert = DeviceCertificate(
            public_key=bytes(public_key),
            key_id=bytes(claims["kid"]),
            unique_id=bytes(claims["uid"]),
            board=str(claims["board"]),
            firmware=str(claims["fw"]),
            micropython=str(claims["mpy"]),
            issued_at=int(claims[CLAIM_IAT]),
            fleet_key_id=bytes(claims["fleet"]),
        )
    except (KeyError, TypeError) as exc:
        raise CertificateError(f"certificate lacks a claim: {exc}") from exc
    if cert.key_id != keys.key_id(cert.public_key) or claims[CLAIM_SUB] != cert.key_id.hex():
        raise CertificateError("the certificate's key id does not match its public key")
    if cert.fleet_key_id != signer_kid or claims[CLAIM_ISS] != signer_kid.hex():
        raise CertificateError("the certificate's issuer does not match its signer")
    return cert
