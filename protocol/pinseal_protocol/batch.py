"""Batches: the gateway's signed Merkle commitment to the bundles it forwards (docs/protocol.md §9).

One Ed25519 signature by the gateway covers a whole batch: the header names the Merkle root
(`merkle`, RFC 9162) over the batch's bundles, their count, the gateway's receive-time window, and the
hash of the gateway's previous batch, so the batches form a chain the network can check for gaps and
forks. The header is a COSE_Sign1 with the same envelope rules as a bundle, so the same strict decoder
and the same rejection reasons apply.

The **leaf** of a bundle is its bundle hash (SHA-256 of its complete bytes), not the bundle bytes:
then the one name a bundle has everywhere (acks, logs, stores) is all a proof needs, the network can
check a batch sent without bundle bodies ("proofs" mode), and a gateway builds the tree from its store
index without reading raw bundles. Its Merkle leaf hash is `SHA-256(0x00 || SHA-256(bundle))`.

Also here: the uplink message (header plus leaves, what the gateway POSTs to the network) and the
inclusion proof document (one bundle's proof as JSON, checkable with nothing but the gateway's key).

Version 2 headers add the gateway's **time flags** (§9.2): which leaves hold readings whose times the
gateway found implausible. The header signs only a SHA-256 of the flags map, which travels in the uplink
beside the leaves: the header keeps its fixed size (and every proof document stays small) however many
leaves are flagged, while each flag is still covered by the gateway's signature. Version 1 headers
(no flags) are still accepted.
"""

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pinseal_protocol import cose, dcbor, keys, merkle
from pinseal_protocol.bundle import int_fields, protected_header
from pinseal_protocol.errors import (
    BadProof,
    ChainBroken,
    InvalidPayload,
    InvalidStructure,
    Malformed,
    TooLarge,
    UnknownDevice,
    UnsupportedVersion,
)

VERSION_1 = 1  # no time flags
VERSION_2 = 2  # + time flags (key 8), what a gateway signs now
VERSION = VERSION_2
VERSIONS = (VERSION_1, VERSION_2)
HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)
MAX_HEADER_SIZE = 1024
MAX_FIELD = 2**63 - 1  # header integers stay within SQLite's signed 64-bit INTEGER
MAX_PATH = 64  # no tree of < 2**64 leaves has a longer audit path

# Header payload keys (§9).
K_VERSION, K_GATEWAY, K_BATCH_NO, K_PREV, K_ROOT, K_COUNT, K_RECEIVED, K_TIME_FLAGS = range(1, 9)
# Uplink message keys.
U_HEADER, U_BUNDLES, U_PROOFS, U_TIME_FLAGS = 1, 2, 3, 4

TIME_FLAGS = ("future", "stale")
"""A reading time later than the receiver's clock allows, or older than its age limit (docs/protocol.md)."""

TimeFlags = Mapping[int, str]
"""Leaf index -> time flag, for the flagged leaves of a batch only."""

Mode = Literal["bundles", "proofs"]
MODES: tuple[Mode, ...] = ("bundles", "proofs")

GatewayKeyResolver = Callable[[bytes], Ed25519PublicKey]
"""Maps a gateway kid to its public key; raises UnknownDevice or Revoked (the network's registry)."""


@dataclass(frozen=True)
class BatchHeader:
    """A verified batch header. `raw` are its exact bytes; `batch_hash` = SHA-256(raw)."""

    gateway_kid: bytes
    batch_no: int
    prev_hash: bytes
    root: bytes
    count: int
    first_received: int
    last_received: int
    batch_hash: bytes
    raw: bytes
    version: int = VERSION_1
    time_flags_hash: bytes | None = None  # version 2: SHA-256 of the signed time flags map


@dataclass(frozen=True)
class LeafProof:
    """One leaf of a "proofs" uplink: its index, the bundle hash (the leaf) and its audit path."""

    leaf_index: int
    bundle_hash: bytes
    path: tuple[bytes, ...]


@dataclass(frozen=True)
class UplinkBatch:
    """A decoded uplink message; the header is not verified yet (see `verify_header`)."""

    header: bytes
    bundles: tuple[bytes, ...] | None
    proofs: tuple[LeafProof, ...] | None
    time_flags: dict[int, str] | None = None  # key 4: present exactly when the header is version 2

    @property
    def mode(self) -> Mode:
        return "bundles" if self.bundles is not None else "proofs"

    @property
    def batch_hash(self) -> bytes:
        return batch_hash(self.header)


# --- leaves and tree ---------------------------------------------------------------------------------


def bundle_hash(bundle: bytes) -> bytes:
    """SHA-256 over a bundle's complete bytes: its name, and its leaf in a batch tree."""
    return hashlib.sha256(bytes(bundle)).digest()


def bundle_leaf_hash(bundle_hash_: bytes) -> bytes:
    """The Merkle leaf hash of a bundle with this bundle hash: `SHA-256(0x00 || bundle_hash)`."""
    return merkle.leaf_hash(bundle_hash_)


def batch_tree(bundle_hashes: Sequence[bytes]) -> merkle.MerkleTree:
    """The batch's Merkle tree; leaves are the bundle hashes in batch order."""
    _check_hashes(bundle_hashes)
    return merkle.MerkleTree(bundle_hashes)


def batch_root(bundle_hashes: Sequence[bytes]) -> bytes:
    """The Merkle root a header signs for these bundle hashes (in batch order)."""
    return batch_tree(bundle_hashes).root


def leaf_proofs(bundle_hashes: Sequence[bytes]) -> list[LeafProof]:
    """Every leaf's proof, for a "proofs" uplink (one tree, O(n log n) in all)."""
    tree = batch_tree(bundle_hashes)
    return [LeafProof(i, bytes(h), tuple(tree.inclusion_proof(i))) for i, h in enumerate(bundle_hashes)]


def _check_hashes(hashes: Sequence[bytes]) -> None:
    if any(len(h) != HASH_SIZE for h in hashes):
        raise ValueError("bundle hashes are 32 bytes")


# --- header ------------------------------------------------------------------------------------------


def batch_hash(header: bytes) -> bytes:
    """SHA-256 over the header's complete bytes: names the batch and links the next one to it."""
    return hashlib.sha256(bytes(header)).digest()


def header_payload(
    *,
    gateway_kid: bytes,
    batch_no: int,
    prev_hash: bytes,
    root: bytes,
    count: int,
    first_received: int,
    last_received: int,
    time_flags: TimeFlags | None = None,
) -> dict[int, Any]:
    """The header payload as a CBOR-ready map: version 2 with `time_flags` (even empty), else version 1."""
    if len(gateway_kid) != keys.KEY_ID_SIZE or len(prev_hash) != HASH_SIZE or len(root) != HASH_SIZE:
        raise ValueError("gateway kid is 16 bytes, prev hash and root 32")
    if count < 1:
        raise ValueError("a batch holds at least one bundle")
    if not all(0 <= v <= MAX_FIELD for v in (batch_no, count, first_received, last_received)):
        raise ValueError(f"batch number, count and times are integers in 0..{MAX_FIELD}")
    if batch_no == 0 and prev_hash != ZERO_HASH:
        raise ValueError("batch 0 has 32 zero bytes as its previous hash")
    payload: dict[int, Any] = {
        K_VERSION: VERSION_1 if time_flags is None else VERSION_2,
        K_GATEWAY: bytes(gateway_kid),
        K_BATCH_NO: batch_no,
        K_PREV: bytes(prev_hash),
        K_ROOT: bytes(root),
        K_COUNT: count,
        K_RECEIVED: [first_received, last_received],
    }
    if time_flags is not None:
        payload[K_TIME_FLAGS] = time_flags_hash(_checked_flags(time_flags, count, ValueError))
    return payload


def sign_header(
    gateway_key: Ed25519PrivateKey,
    *,
    batch_no: int,
    prev_hash: bytes,
    root: bytes,
    count: int,
    first_received: int,
    last_received: int,
    time_flags: TimeFlags | None = None,
) -> bytes:
    """The signed header bytes of a batch (deterministic: Ed25519 and the encoding are).

    With `time_flags` (a map, empty when no leaf is flagged) the header is version 2 and signs them;
    without, version 1 (what gateways sent before time flags existed).
    """
    kid = keys.key_id(keys.public_key_bytes(gateway_key))
    payload = header_payload(
        gateway_kid=kid,
        batch_no=batch_no,
        prev_hash=prev_hash,
        root=root,
        count=count,
        first_received=first_received,
        last_received=last_received,
        time_flags=time_flags,
    )
    return sign_header_payload(gateway_key, kid, dcbor.encode(payload))


def sign_header_payload(gateway_key: cose.Signer, kid: bytes, payload: bytes) -> bytes:
    """Sign already-encoded header payload bytes (tests use this for crafted payloads)."""
    return cose.sign1(payload, gateway_key, protected_header(kid))


def verify_header(data: bytes, gateway_key: Ed25519PublicKey | GatewayKeyResolver) -> BatchHeader:
    """Check a batch header: envelope, gateway signature, version and fields; raises `RejectedMessage`.

    `gateway_key` is the gateway's public key, or a registry lookup by kid (the network ingest).
    Whether the batch continues the gateway's chain needs the receiver's state and is checked there;
    only batch 0's all-zero previous hash is checked here.
    """
    data = bytes(data)
    if len(data) > MAX_HEADER_SIZE:
        raise TooLarge(f"batch header of {len(data)} bytes > {MAX_HEADER_SIZE}")
    message = cose.decode_sign1(data)
    kid = cose.pinseal_kid(message)
    if isinstance(gateway_key, Ed25519PublicKey):
        if keys.key_id(gateway_key) != kid:
            raise UnknownDevice(f"batch signed by {kid.hex()}, not the expected gateway key")
        public_key = gateway_key
    else:
        public_key = gateway_key(kid)
    cose.verify_sign1(message, public_key)
    fields = int_fields(dcbor.decode(message.payload))
    version = _check_version(fields)
    return _parse_header(fields, kid, data, version)


def _check_version(fields: Mapping[int, Any]) -> int:
    """Version first, as for bundles (§7): nothing else of a version we do not implement is read."""
    if K_VERSION not in fields:
        raise InvalidPayload("payload version (key 1) missing")
    version = fields[K_VERSION]
    if not dcbor.is_int(version) or version not in VERSIONS:
        raise UnsupportedVersion(f"batch header version {version!r}")
    return int(version)


def _parse_header(fields: Mapping[int, Any], kid: bytes, data: bytes, version: int) -> BatchHeader:
    last_key = K_TIME_FLAGS if version == VERSION_2 else K_RECEIVED
    for key in range(K_GATEWAY, last_key + 1):
        if key not in fields:
            raise InvalidPayload(f"batch header key {key} missing")
    flags_hash = fields.get(K_TIME_FLAGS) if version == VERSION_2 else None
    if version == VERSION_2 and (not isinstance(flags_hash, bytes) or len(flags_hash) != HASH_SIZE):
        raise InvalidPayload("time flags (key 8) must be a 32-byte hash")
    gateway, batch_no, prev, root, count, received = (fields[k] for k in range(K_GATEWAY, K_RECEIVED + 1))
    if gateway != kid:
        raise InvalidPayload("the header's gateway field differs from the signer's kid")
    for name, value in (("prev hash", prev), ("root", root)):
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise InvalidPayload(f"{name} must be a 32-byte string")
    if not isinstance(received, list) or len(received) != 2:
        raise InvalidPayload("receive times must be an array of 2 integers")
    named = (("batch number", batch_no), ("count", count), ("first receive time", received[0]))
    for name, value in (*named, ("last receive time", received[1])):
        _check_field(name, value)
    if count < 1:
        raise InvalidPayload("a batch holds at least one bundle")
    if batch_no == 0 and prev != ZERO_HASH:
        raise ChainBroken("batch 0 must have 32 zero bytes as its previous hash")
    return BatchHeader(
        gateway_kid=kid,
        batch_no=batch_no,
        prev_hash=prev,
        root=root,
        count=count,
        first_received=received[0],
        last_received=received[1],
        batch_hash=batch_hash(data),
        raw=data,
        version=version,
        time_flags_hash=flags_hash,
    )


def _check_field(name: str, value: Any) -> None:
    if not dcbor.is_uint(value) or value > MAX_FIELD:
        raise InvalidPayload(f"{name} must be an integer in 0..{MAX_FIELD}")


# --- time flags --------------------------------------------------------------------------------------


def time_flags_hash(time_flags: TimeFlags) -> bytes:
    """What a version 2 header signs for its time flags: SHA-256 of the map's deterministic CBOR."""
    return hashlib.sha256(dcbor.encode(dict(time_flags))).digest()


def _checked_flags(time_flags: TimeFlags, count: int, error: type[Exception]) -> dict[int, str]:
    """Keys are leaf indices of this batch, values known flags; `error` is what a violation raises."""
    for index, flag in time_flags.items():
        if not dcbor.is_uint(index) or index >= count:
            raise error(f"time flag for leaf {index!r} of a batch of {count}")
        if flag not in TIME_FLAGS:
            raise error(f"time flag {flag!r} is not one of {TIME_FLAGS}")
    return dict(time_flags)


def check_time_flags(header: BatchHeader, uplink: UplinkBatch) -> dict[int, str]:
    """The time flags the gateway signed for this batch (empty for version 1); raises `BadProof`.

    A version 2 uplink must carry the flags map whose hash the header signs (nothing added, dropped or
    changed on the way: the uplink itself is unsigned); a version 1 uplink must carry none.
    """
    if header.version == VERSION_1:
        if uplink.time_flags is not None:
            raise BadProof("a version 1 batch carries no time flags")
        return {}
    if uplink.time_flags is None:
        raise BadProof("a version 2 batch carries its time flags (uplink key 4)")
    flags = _checked_flags(uplink.time_flags, header.count, BadProof)
    if time_flags_hash(flags) != header.time_flags_hash:
        raise BadProof("the time flags differ from those the header signs")
    return flags


# --- uplink message ----------------------------------------------------------------------------------


def encode_uplink(
    header: bytes,
    *,
    bundles: Sequence[bytes] | None = None,
    proofs: Sequence[LeafProof] | None = None,
    time_flags: TimeFlags | None = None,
) -> bytes:
    """The uplink body: `{1: header, 2: [bundle, ...]}` or `{1: header, 3: [[index, hash, path], ...]}`,
    plus `4: {leaf index: flag}` for a version 2 header (the flags it signs, given as `time_flags`)."""
    if (bundles is None) == (proofs is None):
        raise ValueError("give exactly one of bundles and proofs")
    message: dict[int, Any] = {U_HEADER: bytes(header)}
    if bundles is not None:
        message[U_BUNDLES] = [bytes(b) for b in bundles]
    else:
        assert proofs is not None
        message[U_PROOFS] = [[p.leaf_index, bytes(p.bundle_hash), [bytes(h) for h in p.path]] for p in proofs]
    if time_flags is not None:
        message[U_TIME_FLAGS] = dict(time_flags)
    return dcbor.encode(message)


def build_uplink(
    header: bytes, bundles: Sequence[bytes], mode: Mode, time_flags: TimeFlags | None = None
) -> bytes:
    """The uplink body for a batch in either mode, from the header and all its bundles in leaf order
    (and, for a version 2 header, the time flags it signs)."""
    if mode == "bundles":
        return encode_uplink(header, bundles=bundles, time_flags=time_flags)
    if mode == "proofs":
        hashes = [bundle_hash(b) for b in bundles]
        return encode_uplink(header, proofs=leaf_proofs(hashes), time_flags=time_flags)
    raise ValueError(f"mode is one of {MODES}, not {mode!r}")


def decode_uplink(data: bytes) -> UplinkBatch:
    """Strictly decode an uplink body (deterministic CBOR, exact shape); signatures are not checked."""
    value = dcbor.decode(bytes(data))
    if not isinstance(value, Mapping) or not all(dcbor.is_int(k) for k in value):
        raise InvalidStructure("an uplink message is a map with integer keys")
    keys_ = set(value)
    if U_HEADER not in keys_ or len(keys_ & {U_BUNDLES, U_PROOFS}) != 1 or keys_ - {1, 2, 3, 4}:
        raise InvalidStructure("an uplink message holds key 1, exactly one of keys 2 and 3, and maybe 4")
    header = value[U_HEADER]
    if not isinstance(header, bytes):
        raise InvalidStructure("the uplink header must be a byte string")
    flags = _time_flags(value[U_TIME_FLAGS]) if U_TIME_FLAGS in value else None
    if U_BUNDLES in value:
        bundles = value[U_BUNDLES]
        if not isinstance(bundles, list) or not bundles or not all(isinstance(b, bytes) for b in bundles):
            raise InvalidStructure("uplink bundles must be a non-empty array of byte strings")
        return UplinkBatch(header, tuple(bundles), None, flags)
    proofs = value[U_PROOFS]
    if not isinstance(proofs, list) or not proofs:
        raise InvalidStructure("uplink proofs must be a non-empty array")
    return UplinkBatch(header, None, tuple(_leaf_proof(p) for p in proofs), flags)


def _time_flags(value: Any) -> dict[int, str]:
    if not isinstance(value, Mapping):
        raise InvalidStructure("uplink time flags are a map of leaf index to flag")
    if not all(dcbor.is_uint(k) and isinstance(v, str) for k, v in value.items()):
        raise InvalidStructure("uplink time flags map unsigned leaf indices to text flags")
    return dict(value)


def _leaf_proof(item: Any) -> LeafProof:
    if not isinstance(item, list) or len(item) != 3:
        raise InvalidStructure("a leaf proof is [leaf index, bundle hash, path]")
    index, hash_, path = item
    if not dcbor.is_uint(index):
        raise InvalidStructure("a leaf index is an unsigned integer")
    if not isinstance(hash_, bytes) or len(hash_) != HASH_SIZE:
        raise InvalidStructure("a bundle hash is 32 bytes")
    if not isinstance(path, list) or len(path) > MAX_PATH:
        raise InvalidStructure(f"a path is an array of at most {MAX_PATH} hashes")
    if not all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in path):
        raise InvalidStructure("path hashes are 32 bytes")
    return LeafProof(index, hash_, tuple(path))


def check_leaves(header: BatchHeader, uplink: UplinkBatch) -> list[bytes]:
    """That the uplink's leaves are exactly what the header signs; returns the bundle hashes in order.

    "bundles": the count matches and the root over their hashes is the header's root. "proofs": one
    proof per leaf, indices 0..count-1 in order, each verifying against the header's root. The time
    flags must be those the header signs too (`check_time_flags`).
    """
    check_time_flags(header, uplink)
    if uplink.bundles is not None:
        hashes = [bundle_hash(b) for b in uplink.bundles]
        if len(hashes) != header.count:
            raise BadProof(f"{len(hashes)} bundles, the header counts {header.count}")
        if batch_root(hashes) != header.root:
            raise BadProof("the Merkle root over the bundles differs from the header's root")
        return hashes
    assert uplink.proofs is not None
    if len(uplink.proofs) != header.count:
        raise BadProof(f"{len(uplink.proofs)} proofs, the header counts {header.count}")
    for i, proof in enumerate(uplink.proofs):
        if proof.leaf_index != i:
            raise BadProof(f"proof {i} names leaf {proof.leaf_index}; leaves come in order")
        leaf = bundle_leaf_hash(proof.bundle_hash)
        if not merkle.verify_inclusion_hash(leaf, i, header.count, proof.path, header.root):
            raise BadProof(f"the proof of leaf {i} does not lead to the header's root")
    return [p.bundle_hash for p in uplink.proofs]


# --- inclusion proof document ------------------------------------------------------------------------


def proof_document(header: bytes, bundle_hashes: Sequence[bytes], leaf_index: int) -> dict[str, Any]:
    """The JSON-ready proof that leaf `leaf_index` of the batch with these bundle hashes is in it."""
    tree = batch_tree(bundle_hashes)
    return make_proof_document(
        header=header,
        bundle_hash=bundle_hashes[leaf_index],
        leaf_index=leaf_index,
        tree_size=tree.size,
        path=tree.inclusion_proof(leaf_index),
    )


def make_proof_document(
    *, header: bytes, bundle_hash: bytes, leaf_index: int, tree_size: int, path: Sequence[bytes]
) -> dict[str, Any]:
    """The proof document from its parts (a store that keeps trees or paths can skip rebuilding one)."""
    return {
        "bundle_hash": bytes(bundle_hash).hex(),
        "leaf_index": leaf_index,
        "tree_size": tree_size,
        "path": [bytes(h).hex() for h in path],
        "header": bytes(header).hex(),
    }


def verify_proof_document(
    doc: Mapping[str, Any] | str | bytes,
    gateway_key: Ed25519PublicKey,
    bundle_bytes: bytes | None = None,
) -> BatchHeader:
    """Check a proof document: header signature, path to the signed root, and optionally the bundle.

    `doc` is the parsed JSON object or its text. Returns the verified header (batch number, gateway,
    times); raises a `RejectedMessage` (`bad_proof` when the proof itself does not hold).
    """
    if isinstance(doc, str | bytes):
        try:
            doc = json.loads(doc)
        except ValueError as exc:
            raise Malformed(f"proof document is not JSON ({exc})") from exc
    if not isinstance(doc, Mapping):
        raise InvalidStructure("a proof document is a JSON object")
    hash_ = _hex_field(doc, "bundle_hash", HASH_SIZE)
    header_bytes = _hex_field(doc, "header", None)
    index, size, path_hex = doc.get("leaf_index"), doc.get("tree_size"), doc.get("path")
    if not dcbor.is_uint(index) or not dcbor.is_uint(size):
        raise InvalidStructure("leaf_index and tree_size are non-negative integers")
    if not isinstance(path_hex, list) or len(path_hex) > MAX_PATH:
        raise InvalidStructure(f"path is a list of at most {MAX_PATH} hashes")
    path = [_hex(h, HASH_SIZE, "path") for h in path_hex]
    header = verify_header(header_bytes, gateway_key)
    if size != header.count:
        raise BadProof(f"tree_size {size} differs from the header's count {header.count}")
    if not merkle.verify_inclusion_hash(bundle_leaf_hash(hash_), index, size, path, header.root):
        raise BadProof("the path does not lead from the bundle hash to the header's root")
    if bundle_bytes is not None and bundle_hash(bundle_bytes) != hash_:
        raise BadProof("the bundle bytes do not hash to the proof's bundle_hash")
    return header


def _hex_field(doc: Mapping[str, Any], name: str, size: int | None) -> bytes:
    return _hex(doc.get(name), size, name)


def _hex(text: Any, size: int | None, name: str) -> bytes:
    if not isinstance(text, str) or text != text.lower():
        raise InvalidStructure(f"{name} must be lowercase hex")
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise InvalidStructure(f"{name} must be lowercase hex") from exc
    if raw.hex() != text or (size is not None and len(raw) != size):
        raise InvalidStructure(f"{name} must be {size} bytes of hex" if size else f"{name} must be hex")
    return raw
