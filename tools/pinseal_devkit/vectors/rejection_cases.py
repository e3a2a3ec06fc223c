"""The signed-rejection vectors (docs/protocol.md §5.1) as a table of cases: the gateway's rejection of
the reference bundle for each reason it signs, and the defects a device must refuse."""

from typing import Any

from pinseal_devkit.test_keys import DEVICE_KID, GATEWAY_KEY, OTHER_KID
from pinseal_devkit.vectors.craft import flip_signature_bit
from pinseal_devkit.vectors.inputs import T0
from pinseal_devkit.vectors.records import Case
from pinseal_protocol import ack, bundle, dcbor, rejection


def rejection_input(
    device: bytes = DEVICE_KID,
    bundle_hash: bytes = b"",
    time: int = T0 + 5,
    reason: str = "conflict",
    next_seq: int = 1016,
) -> dict[str, Any]:
    """A rejection's fields (the keyword arguments of `rejection.sign_rejection`)."""
    return {
        "device": device,
        "bundle_hash": bundle_hash,
        "time": time,
        "reason": reason,
        "next_seq": next_seq,
    }


def _signed_map(payload: dict[int, Any]) -> bytes:
    return ack.sign_ack_payload(GATEWAY_KEY, dcbor.encode(payload))


def rejection_cases(reference_bundle: bytes) -> list[Case]:
    """Every rejection case; each names `reference_bundle` (bundle_one_reading_thp, seq 1000)."""
    one_hash = bundle.bundle_hash(reference_bundle)
    rows = []
    for reason, next_seq, why in (
        ("conflict", 1016, "the gateway stores other bytes for seq 1000 and holds readings up to 1015"),
        ("replayed", 1016, "the gateway holds readings up to 1015 and none overlaps this bundle's"),
        ("wrong_topic", 0, "the bundle is signed by another key (one the device no longer holds)"),
    ):
        fields = rejection_input(bundle_hash=one_hash, reason=reason, next_seq=next_seq)
        rows.append(
            Case(
                f"rejection_{reason}",
                f"The gateway's rejection of bundle_one_reading_thp as {reason}: {why}.",
                fields,
                rejection.sign_rejection(GATEWAY_KEY, **fields),
                "accept",
            )
        )
    good = rejection_input(bundle_hash=one_hash)
    good_bytes = rejection.sign_rejection(GATEWAY_KEY, **good)
    with_seq = rejection.payload_map(**good)
    with_seq[ack.K_SEQ] = 1015
    reason_bytes = rejection.payload_map(**good)
    reason_bytes[rejection.K_REASON] = b"conflict"
    no_next = rejection.payload_map(**good)
    del no_next[rejection.K_NEXT]
    other = rejection_input(device=OTHER_KID, bundle_hash=one_hash)
    rows += [
        Case(
            "rejection_bad_signature",
            "rejection_conflict with one signature bit flipped.",
            good,
            flip_signature_bit(good_bytes),
            "bad_signature",
        ),
        Case(
            "rejection_wrong_device",
            "A valid rejection for another device (device = another key id), received by this device.",
            other,
            rejection.sign_rejection(GATEWAY_KEY, **other),
            "wrong_topic",
        ),
        Case(
            "rejection_with_seq",
            "A rejection that also carries an ack's seq (key 3): a receipt to old devices, so refused.",
            good,
            _signed_map(with_seq),
            "invalid_payload",
        ),
        Case(
            "rejection_reason_not_text",
            "The reason (key 6) as a byte string instead of text.",
            good,
            _signed_map(reason_bytes),
            "invalid_payload",
        ),
        Case(
            "rejection_without_next_seq",
            "A rejection without its next seq (key 7).",
            good,
            _signed_map(no_next),
            "invalid_payload",
        ),
    ]
    return rows
