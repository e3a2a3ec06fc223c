"""HTTP uplink: POST one stored batch body to the network ingest, the batch hash as idempotency key.

The ingest answers 200 for a batch it stored now or already held (so a retry after a lost answer is
harmless), 409 with `{"reason": "chain_gap", "expected": n}` when its chain for this gateway stops
before this batch, 409 otherwise when it holds a *different* batch under this number, 413 (with its
`limit`) for a body over its limit, 422 listing every refused bundle, other 4xx for a batch it rejects.
Only the mapping to `SendResult` lives here; what to do next is the outbox's job.
"""

from __future__ import annotations

import json
import logging

import aiohttp

from pinseal_gateway.uplink import RefusedBundle, SendOutcome, SendResult

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/cbor"
TIMEOUT_S = 30.0
RETRYABLE_4XX = frozenset({408, 425, 429})  # timeout, too early, rate limited: the same bytes may pass later


class HttpUplink:
    """`UplinkBackend` over aiohttp; one session (connection pool) for the uplink's lifetime."""

    def __init__(self, url: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, batch_hash: bytes, body: bytes) -> SendResult:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        headers = {"Content-Type": CONTENT_TYPE, "Idempotency-Key": batch_hash.hex()}
        try:
            async with self._session.post(self.url, data=body, headers=headers) as response:
                text = await response.text(errors="replace")
                return classify(response.status, text)
        except TimeoutError:
            return SendResult.retry(f"timed out after {self.timeout.total:g} s")
        except aiohttp.ClientError as exc:
            return SendResult.retry(f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def classify(status: int, text: str) -> SendResult:
    """An ingest answer as a `SendResult` (pure, so every documented response is tested directly)."""
    detail = _reason(text) or text[:200]
    if status == 200:
        return SendResult.sent(detail)
    if status == 409:
        doc = _json(text)
        if doc.get("reason") == "chain_gap":
            expected = doc.get("expected")
            if type(expected) is int:
                return SendResult(SendOutcome.RESEND_FROM, f"chain_gap, expected {expected}", expected)
            return SendResult.retry(f"chain_gap without a usable 'expected': {text[:200]}")
        return SendResult(SendOutcome.CONFLICT, f"409 {detail}")
    if status == 413:
        doc = _json(text)
        limit = doc.get("limit")
        limit = limit if type(limit) is int and limit > 0 else None
        return SendResult(
            SendOutcome.TOO_LARGE, f"413 {detail}", limit=limit, reason=_word(doc.get("reason"))
        )
    if status == 422:
        doc = _json(text)
        return SendResult(
            SendOutcome.REFUSED, f"422 {detail}", refused=_refused(doc), reason=_word(doc.get("reason"))
        )
    if status >= 500 or status in RETRYABLE_4XX:
        return SendResult.retry(f"{status} {detail}")
    if 400 <= status < 500:
        return SendResult(SendOutcome.REJECTED, f"{status} {detail}")
    return SendResult.retry(f"unexpected HTTP status {status} {detail}")


def _json(text: str) -> dict:
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _reason(text: str) -> str:
    doc = _json(text)
    parts = [str(doc[k]) for k in ("status", "reason", "detail") if k in doc]
    return " ".join(parts)


MAX_REASON = 64
MAX_DETAIL = 500


def _refused(doc: dict) -> tuple[RefusedBundle, ...]:
    """Every usable entry of a 422's `refused` list; an ingest without the list (older, or a proxy of its
    own) may still name its first refused bundle in the top-level fields, so those count as one entry.
    Entries naming neither a valid index nor a valid hash are dropped: the outbox only acts on bundles
    it can find in the batch it sent."""
    listed = doc.get("refused")
    entries = listed if isinstance(listed, list) else [doc]
    found = [_refused_bundle(e, doc) for e in entries if isinstance(e, dict)]
    return tuple(r for r in found if r is not None)


def _refused_bundle(entry: dict, doc: dict) -> RefusedBundle | None:
    index = entry.get("bundle_index")
    index = index if type(index) is int and index >= 0 else None
    bundle_hash = _hash(entry.get("bundle_hash"))
    if index is None and bundle_hash is None:
        return None
    reason = _word(entry.get("reason")) or _word(doc.get("reason")) or "unspecified"
    detail = entry.get("detail")
    return RefusedBundle(
        index,
        bundle_hash,
        reason,
        detail[:MAX_DETAIL] if isinstance(detail, str) else "",
        entry.get("held") is True,
    )


def _hash(value: object) -> bytes | None:
    if not isinstance(value, str) or len(value) != 64:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


def _word(value: object) -> str | None:
    return value[:MAX_REASON] if isinstance(value, str) and value else None
