"""The JSON record of one bundle, ack or rejection vector (fields: protocol/vectors/README.md)."""

import hashlib
from dataclasses import dataclass, field
from typing import Any

from pinseal_devkit.test_keys import (
    DEVICE_KID,
    DEVICE_PUB,
    DEVICE_SEED,
    GATEWAY_KEY,
    GATEWAY_KID,
    GATEWAY_PUB,
    GATEWAY_SEED,
)
from pinseal_devkit.vectors.craft import is_sign1, parts, seal
from pinseal_devkit.vectors.inputs import readings_to_json
from pinseal_protocol import ack, bundle, rejection


@dataclass(frozen=True)
class Case:
    """One row of a table of cases: the message, the fields it was meant to carry, what a receiver says."""

    name: str
    description: str
    fields: dict[str, Any]
    message: bytes
    expect: str
    context: dict[str, Any] = field(default_factory=dict)


def bundle_vector(case: Case) -> dict[str, Any]:
    """A bundle case as its JSON record; `reproducible` if a correct device makes exactly these bytes."""
    fields, data = case.fields, case.message
    payload = parts(data)[2] if is_sign1(data) else b""
    vector: dict[str, Any] = {
        "description": case.description,
        "kind": "bundle",
        "seed": DEVICE_SEED.hex(),
        "public_key": DEVICE_PUB.hex(),
        "key_id": DEVICE_KID.hex(),
        "input": {
            "boot": fields["boot"],
            "seq": fields["seq"],
            "prev": fields["prev"].hex(),
            "status": fields["status"].to_cbor(),
            "time_source": fields["time_source"],
            "readings": readings_to_json(fields["readings"]),
        },
        "reproducible": data == seal(fields),
        "payload": payload.hex() if isinstance(payload, bytes) else "",
        "bundle": data.hex(),
        "bundle_hash": bundle.bundle_hash(data).hex(),
        "size": len(data),
    }
    if case.context:
        vector["context"] = case.context
    vector["expect"] = case.expect
    return vector


def ack_vector(case: Case) -> dict[str, Any]:
    """An ack case as its JSON record; `reproducible` if a correct gateway makes exactly these bytes."""
    fields = case.fields
    inputs = {
        "device": fields["device"].hex(),
        "seq": fields["seq"],
        "bundle_hash": fields["bundle_hash"].hex(),
        "time": fields["time"],
    }
    return _gateway_message_vector("ack", case, inputs, ack.sign_ack(GATEWAY_KEY, **fields))


def rejection_vector(case: Case) -> dict[str, Any]:
    """A rejection case as its JSON record (docs/protocol.md §5.1)."""
    fields = case.fields
    inputs = {
        "device": fields["device"].hex(),
        "bundle_hash": fields["bundle_hash"].hex(),
        "time": fields["time"],
        "reason": fields["reason"],
        "next_seq": fields["next_seq"],
    }
    return _gateway_message_vector("rejection", case, inputs, rejection.sign_rejection(GATEWAY_KEY, **fields))


def _gateway_message_vector(kind: str, case: Case, inputs: dict[str, Any], made: bytes) -> dict[str, Any]:
    """The record of a message the gateway signs for a device; `made`: what a correct gateway makes
    from `inputs`, so `reproducible` says whether the case's bytes are exactly that."""
    data = case.message
    vector: dict[str, Any] = {
        "description": case.description,
        "kind": kind,
        "seed": GATEWAY_SEED.hex(),
        "public_key": GATEWAY_PUB.hex(),
        "key_id": GATEWAY_KID.hex(),
        "device_key_id": DEVICE_KID.hex(),
        "input": inputs,
        "reproducible": data == made,
        "payload": parts(data)[2].hex() if is_sign1(data) else "",
        kind: data.hex(),
        f"{kind}_hash": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    if case.context:
        vector["context"] = case.context
    vector["expect"] = case.expect
    return vector
