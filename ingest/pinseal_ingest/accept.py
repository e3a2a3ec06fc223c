"""One uplink body to a verdict: the check chain of docs/protocol.md §9.3, then an all-or-nothing store.

Every check runs inside one transaction together with the writes, and that transaction holds the
batch's gateway and devices (`Database.lock`: SQLite's write lock, PostgreSQL's locks on those signers),
so what was checked (chain head, stored bundles) cannot change before the batch is stored, whichever
other worker or host is storing at the same time; a rejection at any point rolls back everything of the
batch. Only the rejection itself is recorded, afterwards. When a concurrent writer wins a race on a unique
constraint (the same batch, or a bundle, stored by another worker a moment earlier), the batch is run
again from the start (`retrying`) and then finds those rows: a duplicate, or a bundle already held.

Trust (docs/protocol.md §9.6): the ingest verifies the device signature and the reading times of every
bundle whose bytes it receives; a "proofs" batch gives it only the gateway's signed word. Bytes that
arrive later for such a bundle (the same batch resent with its bundles, or another gateway's batch that
is refused because the bundle is already committed) are verified then, in a transaction of their own,
and make the bundle ingest-verified (`_upgrade`); they never commit anything twice.
"""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pinseal_ingest import registry, store
from pinseal_ingest.storage import Database, retrying
from pinseal_ingest.timecheck import time_flag
from pinseal_protocol import batch, bundle, cose, history
from pinseal_protocol.batch import BatchHeader, UplinkBatch
from pinseal_protocol.errors import (
    ChainBroken,
    Conflict,
    InvalidStructure,
    RejectedMessage,
    Replayed,
    Revoked,
    TooLarge,
    UnknownDevice,
)

MAX_FLAGGED_IN_ANSWER = 256
"""Flagged leaves listed in a POST answer; GET /v1/batches/<hash> lists every leaf."""


@dataclass(frozen=True)
class Accepted:
    """A batch the network now holds: newly `stored`, or a `duplicate` of one stored earlier.

    `verified_by` counts its leaves by who verified the device signature (the ingest itself, or only
    the gateway); `time_flags` lists its flagged leaves with the gateway's and the ingest's flag.
    """

    status: Literal["stored", "duplicate"]
    batch_hash: bytes
    mode: str
    count: int
    bundles: int
    verified_by: dict[str, int] = field(default_factory=dict)
    time_flags: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        """The JSON answer to the gateway."""
        return {
            "status": self.status,
            "batch_hash": self.batch_hash.hex(),
            "verified_by": self.verified_by,
            "time_flags": self.time_flags,
        }


@dataclass(eq=False)
class Rejection(Exception):
    """A rejected batch: the wire reason, the HTTP status that carries it, and extra response fields."""

    reason: str
    detail: str
    status: int = 400
    extra: dict[str, Any] = field(default_factory=dict)
    gateway_kid: bytes | None = None
    batch_hash: bytes | None = None
    bundle_index: int | None = None
    evidence: bytes | None = None

    def __post_init__(self) -> None:
        super().__init__(f"{self.reason}: {self.detail}")

    def body(self) -> dict[str, Any]:
        """The JSON response body."""
        out: dict[str, Any] = {"reason": self.reason, "detail": self.detail, **self.extra}
        if self.batch_hash is not None:
            out["batch_hash"] = self.batch_hash.hex()
        return out


def too_large(size: int | None, limit: int) -> Rejection:
    """A body over the ingest's size limit (checked by the HTTP layer before anything is read)."""
    got = f"{size} bytes" if size is not None else "the body"
    return Rejection(
        TooLarge.reason, f"{got} over the limit of {limit} bytes", status=413, extra={"limit": limit}
    )


def accept(conn: Database, body: bytes, *, idempotency_key: str | None, now: float) -> Accepted:
    """Verify and store one uplink body; raises `Rejection` (nothing of the batch is then stored)."""
    try:
        uplink = batch.decode_uplink(body)
    except RejectedMessage as exc:
        raise Rejection(exc.reason, exc.detail) from exc
    batch_hash = uplink.batch_hash
    gateway_kid = _peek_kid(uplink.header)
    try:
        if idempotency_key is not None and idempotency_key.strip().lower() != batch_hash.hex():
            raise InvalidStructure("Idempotency-Key is not the batch hash")
        return retrying(conn, lambda: _accept_uplink(conn, uplink, gateway_kid, now))
    except Rejection as rejection:
        rejection.gateway_kid = rejection.gateway_kid or gateway_kid
        rejection.batch_hash = batch_hash
        rejection.evidence = rejection.evidence or uplink.header
        if rejection.status == 422 and uplink.bundles is not None:
            # Header, chain and leaves held; bundles were refused (already committed, perhaps by
            # another gateway's proofs batch whose bundle these bytes now let the ingest verify).
            bodies = uplink.bundles
            retrying(conn, lambda: _upgrade(conn, bodies, now, gateway_kid, batch_hash))
        raise
    except RejectedMessage as exc:
        status = 403 if isinstance(exc, UnknownDevice | Revoked) else 400
        status = 409 if isinstance(exc, Conflict) else status
        raise Rejection(
            exc.reason,
            exc.detail,
            status,
            gateway_kid=gateway_kid,
            batch_hash=batch_hash,
            evidence=uplink.header,
        ) from exc


def _accept_uplink(conn: Database, uplink: UplinkBatch, claimed: bytes | None, now: float) -> Accepted:
    with conn.transaction():
        # The claimed gateway's lock before anything is read: the same batch sent to two workers at once
        # is then stored by one and found a duplicate by the other, which would otherwise have checked
        # "not stored" first and, after waiting for the winner, seen its own batch_no taken (a conflict).
        # The claim (`claimed`: the header's kid, unverified) is only a lock key here.
        conn.lock("gateways", [claimed] if claimed is not None else [])
        if not store.has_batch(conn, uplink.batch_hash):
            return _with_trust(conn, _verify_and_store(conn, uplink, now))
    if uplink.bundles is not None:
        _upgrade_resent(conn, uplink, now)
    return _with_trust(conn, Accepted("duplicate", uplink.batch_hash, uplink.mode, _count(uplink), 0))


def _with_trust(conn: Database, result: Accepted) -> Accepted:
    """The answer with who verified the batch's leaves and which are time-flagged, as stored now."""
    return Accepted(
        result.status,
        result.batch_hash,
        result.mode,
        result.count,
        result.bundles,
        store.verified_by_counts(conn, result.batch_hash),
        store.flagged_leaves(conn, result.batch_hash, MAX_FLAGGED_IN_ANSWER),
    )


def _count(uplink: UplinkBatch) -> int:
    return len(uplink.bundles if uplink.bundles is not None else uplink.proofs or ())


def _peek_kid(header: bytes) -> bytes | None:
    """The header's claimed signer, for the rejection log (unverified, so only ever informational)."""
    try:
        return cose.pinseal_kid(cose.decode_sign1(header))
    except RejectedMessage:
        return None


def _verify_and_store(conn: Database, uplink: UplinkBatch, now: float) -> Accepted:
    header = batch.verify_header(uplink.header, registry.resolver(conn, "gateways"))
    conn.lock("gateways", [header.gateway_kid])
    _check_chain(conn, header)
    leaves = batch.check_leaves(header, uplink)
    flags = batch.check_time_flags(header, uplink)
    if uplink.bundles is not None:
        _store_bundles(conn, uplink.bundles, header, now)
    else:
        seen: set[bytes] = set()
        refused: list[Rejection] = []
        for i, leaf in enumerate(leaves):
            try:
                _check_not_committed(conn, leaf, seen, i)
            except Rejection as rejection:
                refused.append(rejection)
        if refused:
            raise _all_refused(refused)
    store.insert_batch(conn, header, uplink.mode, leaves, now, flags)
    stored_bodies = len(uplink.bundles) if uplink.bundles is not None else 0
    return Accepted("stored", header.batch_hash, uplink.mode, header.count, stored_bodies)


def _check_chain(conn: Database, header: BatchHeader) -> None:
    """batch_no must be the next number for the gateway and prev the hash of its stored predecessor."""
    head = store.chain_head(conn, header.gateway_kid)
    expected = 0 if head is None else head.batch_no + 1
    if header.batch_no < expected:
        raise Rejection(
            Conflict.reason,
            f"batch {header.batch_no} of this gateway is already stored with other bytes",
            status=409,
        )
    if header.batch_no > expected:
        raise Rejection(
            "chain_gap",
            f"batch {header.batch_no} arrived, the next expected is {expected}",
            status=409,
            extra={"expected": expected},
        )
    prev = batch.ZERO_HASH if head is None else head.batch_hash
    if header.prev_hash != prev:
        raise ChainBroken(f"prev {header.prev_hash.hex()} is not the stored batch {expected - 1}'s hash")


def _check_not_committed(conn: Database, leaf: bytes, seen: set[bytes], index: int) -> None:
    """A bundle is paid for once: not twice in a batch, not again in a later batch."""
    if leaf in seen:
        raise _bundle_rejection(Replayed("the same bundle appears twice in this batch"), index, leaf, None)
    earlier = store.committed_batch(conn, leaf)
    if earlier is not None:
        exc = Replayed(f"already committed by batch {earlier.hex()}")
        raise _bundle_rejection(exc, index, leaf, None, held_by=earlier)
    seen.add(leaf)


def _store_bundles(conn: Database, bodies: tuple[bytes, ...], header: BatchHeader, now: float) -> None:
    """Verify every bundle (device signature, then history) and write it; any refusal rejects all.

    Every bundle is judged, not only up to the first refusal, so the 422 can name all of them and the
    gateway can take them out in one reseal rather than one round trip each. A refused bundle is not
    written, so the bundles after it are judged against exactly what a batch without it would meet:
    the honest rest, resealed, is accepted. The whole batch is rolled back all the same.

    Each is written with the ingest's own verdict on its reading times (`timecheck`), whatever the
    gateway claims: a version 1 gateway claims nothing, and a gateway's clock may be wrong.

    A bundle whose first sequence number is above everything stored for its device can be neither a
    duplicate, nor a conflict, nor a replay (all three need a stored bundle at or above its start), so
    `history.classify` would call it new: such bundles, the common case of a device's chain growing,
    skip the history queries. Registry lookups are cached for the batch (one transaction).
    """
    devices = _cached(registry.resolver(conn, "devices"))
    seen: set[bytes] = set()
    refused: list[Rejection] = []
    signed: list[tuple[int, bundle.Bundle]] = []
    for i, raw in enumerate(bodies):
        # Committed leaves first: the answer "held" (rather than, say, "revoked" for a device revoked
        # since) is what tells the sender they are delivered. A leaf committed by a proofs-mode batch
        # was not verified here; `_upgrade` verifies these bytes after the refusal (docs/protocol.md §9.7).
        leaf = batch.bundle_hash(raw)
        try:
            _check_not_committed(conn, leaf, seen, i)
            signed.append((i, bundle.verify_bundle(raw, devices)))
        except Rejection as rejection:
            refused.append(rejection)
        except RejectedMessage as exc:
            refused.append(_bundle_rejection(exc, i, leaf, None))
    # Signatures checked; now the devices' histories, held against concurrent writers until commit.
    conn.lock("devices", (verified.kid for _, verified in signed))
    high_water: dict[bytes, int | None] = {}
    for i, verified in signed:
        try:  # again: another worker's batch may have committed it while this one waited for the lock
            _check_not_committed(conn, verified.bundle_hash, set(), i)
        except Rejection as rejection:
            refused.append(rejection)
            continue
        kid = verified.kid
        if kid not in high_water:
            high_water[kid] = store.high_water(conn, kid)
        top = high_water[kid]
        if top is not None and verified.seq <= top:
            try:
                verdict = history.classify(verified, store.relevant_bundles(conn, verified))
                if verdict is history.Verdict.DUPLICATE:  # stored without being a leaf: cannot happen,
                    raise Replayed("the same bytes are already stored")  # but never pay for it twice
            except RejectedMessage as exc:
                evidence = verified.raw if isinstance(exc, Conflict) else None
                refused.append(_bundle_rejection(exc, i, verified.bundle_hash, evidence))
                continue
        flag = time_flag(verified, header.first_received, header.last_received, now)
        store.insert_bundle(conn, verified, flag)
        high_water[kid] = verified.last_seq if top is None else max(top, verified.last_seq)
    refused.sort(key=lambda rejection: rejection.bundle_index or 0)
    if refused:
        raise _all_refused(refused)


def _upgrade_resent(conn: Database, uplink: UplinkBatch, now: float) -> None:
    """A stored batch resent with its bundles: verify the bodies it lacked, if they are its leaves."""
    try:
        header = batch.verify_header(uplink.header, registry.resolver(conn, "gateways"))
        batch.check_leaves(header, uplink)
    except RejectedMessage:
        return  # still the stored batch's duplicate; these bytes are not its leaves, so teach nothing
    assert uplink.bundles is not None
    _upgrade(conn, uplink.bundles, now, header.gateway_kid, header.batch_hash)


def _upgrade(
    conn: Database,
    bodies: tuple[bytes, ...],
    now: float,
    gateway_kid: bytes | None,
    batch_hash: bytes,
) -> None:
    """Store the verified bytes of committed bundles the ingest held only on a gateway's word.

    Only bytes whose hash is such a leaf are looked at, so an honest batch costs one index lookup
    per bundle here. The device signature must verify and the bundle must not overlap a stored one
    with other bytes (`conflict`); counting backwards (`replayed`) does not matter, as the bundle is
    committed already. A bundle that fails is recorded as a rejection with its bytes as evidence: a
    gateway committed something its device did not sign.
    """
    devices = _cached(registry.resolver(conn, "devices"))
    with conn.transaction():
        for i, raw in enumerate(bodies):
            window = store.unverified_leaf(conn, batch.bundle_hash(raw))
            if window is None:
                continue
            try:
                verified = bundle.verify_bundle(raw, devices)
                conn.lock("devices", [verified.kid])
                with contextlib.suppress(Replayed):
                    history.classify(verified, store.relevant_bundles(conn, verified))
            except RejectedMessage as exc:
                store.record_rejection(
                    conn,
                    reason=exc.reason,
                    detail=f"bundle {i}, committed on a gateway's word: {exc.detail}",
                    received_at=now,
                    gateway_kid=gateway_kid,
                    batch_hash=batch_hash,
                    bundle_index=i,
                    evidence=raw,
                )
                continue
            flag = time_flag(verified, window.first_received, window.last_received, now)
            store.insert_bundle(conn, verified, flag)


def _cached(resolve: Callable[[bytes], Ed25519PublicKey]) -> Callable[[bytes], Ed25519PublicKey]:
    keys_by_kid: dict[bytes, Ed25519PublicKey] = {}

    def cached(kid: bytes) -> Ed25519PublicKey:
        key = keys_by_kid.get(kid)
        if key is None:
            key = keys_by_kid[kid] = resolve(kid)
        return key

    return cached


def _bundle_rejection(
    exc: RejectedMessage,
    index: int,
    bundle_hash: bytes,
    evidence: bytes | None,
    *,
    held_by: bytes | None = None,
) -> Rejection:
    """One refused bundle; `held_by` names the stored batch that already holds these exact bytes."""
    refused = {
        "bundle_index": index,
        "bundle_hash": bundle_hash.hex(),
        "reason": exc.reason,
        "detail": exc.detail,
        "held": held_by is not None,
    }
    if held_by is not None:
        refused["held_by"] = held_by.hex()
    return Rejection(
        exc.reason,
        f"bundle {index}: {exc.detail}",
        status=422,
        extra={"bundle_index": index, "bundle_hash": bundle_hash.hex(), "refused": [refused]},
        bundle_index=index,
        evidence=evidence,
    )


def _all_refused(refused: list[Rejection]) -> Rejection:
    """The batch's one rejection: the first refusal's fields on top (as before), every refusal listed.

    `held: true` marks a bundle the network already holds, byte for byte, as a leaf of a stored batch
    (typically delivered by another gateway): the sender may count it as delivered, while any other
    refusal is one the network will not take from anyone.
    """
    first = refused[0]
    more = f" (and {len(refused) - 1} more refused bundles)" if len(refused) > 1 else ""
    return Rejection(
        first.reason,
        first.detail + more,
        status=422,
        extra={**first.extra, "refused": [entry for r in refused for entry in r.extra["refused"]]},
        bundle_index=first.bundle_index,
        evidence=first.evidence,
    )
