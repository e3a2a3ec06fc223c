"""HTTP uplink: POST one stored batch body to the network ingest, the batch hash as idempotency key.

The ingest answers 200 for a batch it stored now or already held (so a retry after a lost answer is
harmless), 409 with `{"reason": "chain_gap", "expected": n}` when its chain for this gateway stops
before this batch, 409 otherwise when it holds a *different* batch under this number, other 4xx for a
batch it rejects. Only the mapping to `SendResult` lives here; what to do next is the outbox's job.
"""

from __future__ import annotations

import json
import logging

import aiohttp

from pinseal_gateway.uplink import Outcome, SendResult

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
                return SendResult(Outcome.RESEND_FROM, f"chain_gap, expected {expected}", expected)
            return SendResult.retry(f"chain_gap without a usable 'expected': {text[:200]}")
        return SendResult(Outcome.CONFLICT, f"409 {detail}")
    if status >= 500 or status in RETRYABLE_4XX:
        return SendResult.retry(f"{status} {detail}")
    if 400 <= status < 500:
        return SendResult(Outcome.REJECTED, f"{status} {detail}")
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
