"""The ack vectors as a table of cases: the gateway's ack for the reference bundle, and its defects."""

import struct
from typing import Any

from pinseal_devkit.test_keys import DEVICE_KID, GATEWAY_KEY, OTHER_KEY, OTHER_KID, OTHER_PUB, OTHER_SEED
from pinseal_devkit.vectors.craft import flip_signature_bit, raw_map
from pinseal_devkit.vectors.inputs import T0, U64_EDGES
from pinseal_devkit.vectors.records import Case
from pinseal_protocol import ack, bundle, dcbor


def ack_input(
    device: bytes = DEVICE_KID, seq: int = 1000, bundle_hash: bytes = b"", time: int = T0 + 5
) -> dict[str, Any]:
    """An ack's fields (the keyword arguments of `ack.sign_ack`)."""
    return {"device": device, "seq": seq, "bundle_hash": bundle_hash, "time": time}


def ack_cases(reference_bundle: bytes) -> list[Case]:
    """Every ack case; `reference_bundle` is bundle_one_reading_thp, the bundle the good ack names."""
    one_hash = bundle.bundle_hash(reference_bundle)
    good = ack_input(bundle_hash=one_hash)
    good_bytes = ack.sign_ack(GATEWAY_KEY, **good)
    other = ack_input(device=OTHER_KID, bundle_hash=one_hash)
    v2_payload = ack.payload_map(**good)
    v2_payload[ack.K_VERSION] = 2
    enc = {k: dcbor.encode(val) for k, val in ack.payload_map(**good).items()}
    enc[ack.K_TIME] = b"\x1b" + struct.pack(">Q", good["time"])
    rows = [
        Case(
            "ack_valid",
            "The gateway's ack for bundle_one_reading_thp: seq 1000 stored, committed at T0 + 5 s.",
            good,
            good_bytes,
            "accept",
        ),
        Case(
            "ack_bad_signature",
            "ack_valid with one signature bit flipped.",
            good,
            flip_signature_bit(good_bytes),
            "bad_signature",
        ),
        Case(
            "ack_wrong_device",
            "A valid ack for another device (device = another key id), received by this device.",
            other,
            ack.sign_ack(GATEWAY_KEY, **other),
            "wrong_topic",
        ),
        Case(
            "ack_wrong_gateway_key",
            "An ack signed by a key other than the provisioned gateway key (with that key's kid).",
            good,
            ack.sign_ack(OTHER_KEY, **good),
            "unknown_device",
            {"signed_by": {"seed": OTHER_SEED.hex(), "public_key": OTHER_PUB.hex()}},
        ),
        Case(
            "ack_unsupported_version",
            "Ack payload version 2.",
            good,
            ack.sign_ack_payload(GATEWAY_KEY, dcbor.encode(v2_payload)),
            "unsupported_version",
        ),
        Case(
            "ack_nondet_time",
            "Ack time in a 9-byte head instead of 5 bytes; signed over these bytes.",
            good,
            ack.sign_ack_payload(GATEWAY_KEY, raw_map(sorted(enc.items()))),
            "non_deterministic",
        ),
        Case("ack_truncated", "ack_valid without its last byte.", good, good_bytes[:-1], "malformed"),
    ]
    for value, tag in U64_EDGES:
        edge = ack_input(bundle_hash=one_hash, seq=value)
        rows.append(
            Case(
                f"ack_seq_{tag}",
                f"An ack whose seq is {value}: a device's contiguous seq can be any uint64 (9-byte head).",
                edge,
                ack.sign_ack(GATEWAY_KEY, **edge),
                "accept",
            )
        )
    return rows
