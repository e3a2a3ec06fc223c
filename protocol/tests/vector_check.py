"""Runs one normative vector through the host receiver, as a gateway (bundles) or a device (acks)."""

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pinseal_protocol import ack, bundle, history, keys, rejection
from pinseal_protocol.errors import Revoked, UnknownDevice


def registry(vector: dict[str, Any]) -> Any:
    public_key = keys.load_public_key(bytes.fromhex(vector["public_key"]))
    mode = vector.get("context", {}).get("registry", "active")

    def resolve(kid: bytes) -> Ed25519PublicKey:
        if mode == "unknown" or kid != keys.key_id(public_key):
            raise UnknownDevice(kid.hex())
        if mode == "revoked":
            raise Revoked(kid.hex())
        return public_key

    return resolve


def receive_bundle(vector: dict[str, Any]) -> bundle.Bundle:
    context = vector.get("context", {})
    topic = context.get("topic", f"pinseal/v1/{vector['key_id']}/up")
    topic_kid = keys.parse_key_id_hex(topic.split("/")[2])
    resolve = registry(vector)
    received = bundle.verify_bundle(bytes.fromhex(vector["bundle"]), resolve, topic_kid=topic_kid)
    stored = [bundle.verify_bundle(bytes.fromhex(s), resolve) for s in context.get("stored", [])]
    history.classify(received, stored)
    return received


def receive_ack(vector: dict[str, Any]) -> ack.Ack:
    gateway = keys.load_public_key(bytes.fromhex(vector["public_key"]))
    return ack.verify_ack(bytes.fromhex(vector["ack"]), gateway, bytes.fromhex(vector["device_key_id"]))


def receive_reply(vector: dict[str, Any]) -> ack.Ack | rejection.RejectionNotice:
    """A message on the device's ack topic (ack or rejection vector), read as a device does."""
    gateway = keys.load_public_key(bytes.fromhex(vector["public_key"]))
    data = bytes.fromhex(vector[vector["kind"]])
    return rejection.verify_reply(data, gateway, bytes.fromhex(vector["device_key_id"]))
