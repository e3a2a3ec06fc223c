# pinseal.wire: the device side of wire protocol v1 (docs/protocol.md).
#
#   cbor    deterministic CBOR encoder, strict decoder (RFC 8949 §4.2.1)
#   cose    COSE_Sign1 with EdDSA/Ed25519 (RFC 9052)
#   senml   readings as a SenML pack (RFC 8428 §6)
#   bundle  the signed bundle a device sends
#   ack     the gateway's signed ack, checked before the outbox drops anything
#
# This file holds only the error type the modules share, so importing one module does not load the
# others (RAM on an ESP32 is counted in kilobytes).


class WireError(ValueError):
    """Bad input or a rejected message.

    A subclass of ValueError, so callers that only care "was it acceptable" catch ValueError.
    `reason` is one of the rejection reasons of docs/protocol.md §8, as the host codec reports them:
    "malformed", "non_deterministic", "wrong_tag", "invalid_structure", "unsupported_algorithm",
    "bad_signature", "unsupported_version", "invalid_payload", "too_large", and for acks
    "unknown_device" (not signed by this device's gateway) and "wrong_topic" (names another device).
    The message adds the detail for logs.
    """

    def __init__(self, reason, detail):
        super().__init__(reason + ": " + detail)
        self.reason = reason
