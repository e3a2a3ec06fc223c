"""Forwarding sealed batches to the network: one small interface, two backends (HTTP, MQTT).

A backend only delivers one stored body and says what happened; ordering, retries, backoff and the
durable state live in `outbox.py`, so both backends behave the same under outages and restarts.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pinseal_gateway.context import GatewayContext


class SendOutcome(enum.Enum):
    """What one delivery attempt established."""

    SENT = "sent"
    """The network confirmed it holds this batch (newly stored or a duplicate of what it holds)."""
    RETRY = "retry"
    """Transient: unreachable, timed out, overloaded. Send the same bytes again later."""
    RESEND_FROM = "resend_from"
    """The network's chain ends before this batch; resend from `SendResult.expected` on."""
    REJECTED = "rejected"
    """The network refused the batch (4xx other than conflict, 413, 422). Retried with backoff, logged as
    an error, because the usual causes (gateway not yet registered upstream) are fixed by an operator."""
    TOO_LARGE = "too_large"
    """413: the body is over the network's limit (`SendResult.limit` if it said). Nothing was stored; the
    same bytes can never pass, so the outbox reseals the chain from this batch in smaller batches."""
    REFUSED = "refused"
    """422: bundles of the batch were refused (`SendResult.refused`, maybe empty). Nothing was stored; the
    outbox reseals the chain from this batch without them (docs/gateway.md, "Refused batches")."""
    CONFLICT = "conflict"
    """The network holds a different batch under this number: permanent, the uplink stops."""


@dataclass(frozen=True)
class RefusedBundle:
    """One bundle the network named in a 422: by hash and/or leaf index (at least one is set)."""

    bundle_index: int | None
    bundle_hash: bytes | None
    reason: str
    detail: str = ""
    held: bool = False
    """The network already holds these exact bytes (e.g. from another gateway): delivered, not refused."""


@dataclass(frozen=True)
class SendResult:
    outcome: SendOutcome
    detail: str = ""
    expected: int | None = None
    refused: tuple[RefusedBundle, ...] = ()
    limit: int | None = None
    """TOO_LARGE: the network's body limit in bytes, if it said."""
    reason: str | None = None
    """TOO_LARGE, REFUSED: the network's top-level reason word, if it gave one."""

    @classmethod
    def sent(cls, detail: str = "") -> SendResult:
        return cls(SendOutcome.SENT, detail)

    @classmethod
    def retry(cls, detail: str) -> SendResult:
        return cls(SendOutcome.RETRY, detail)


class UplinkBackend(Protocol):
    """Delivers one batch's stored uplink body; never raises for delivery failures, returns them."""

    async def send(self, batch_hash: bytes, body: bytes) -> SendResult: ...

    async def close(self) -> None: ...


async def run_uplink(ctx: GatewayContext, stop: asyncio.Event, **options: Any) -> None:
    """The uplink task the daemon starts (see `outbox.run_uplink`); imported lazily to avoid a cycle."""
    from pinseal_gateway.uplink.outbox import run_uplink as drain

    await drain(ctx, stop, **options)
