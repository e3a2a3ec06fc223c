"""Parsing the API's query strings: every bad value becomes a `QueryError` naming the parameter and what
would be accepted (the API answers 400 with it), never an exception from deep inside, never a silent
default that hides a typo.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pinseal_protocol import keys

DEFAULT_RANGE_S = 86400.0
MAX_RANGE_S = 366 * 86400.0
DEFAULT_LIMIT = 2000
MAX_LIMIT = 20000
FORMATS = ("json", "csv")
HEX_KID = re.compile(f"[0-9a-fA-F]{{{2 * keys.KEY_ID_SIZE}}}")
LATEST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: the last instant ISO 8601 can write


class QueryError(ValueError):
    """A query parameter the API cannot use; the message says which and what it takes."""


@dataclass(frozen=True)
class ReadingsQuery:
    start: float
    end: float
    limit: int
    format: str


def parse_time(name: str, text: str) -> float:
    """Unix seconds (`1765000000`, `1765000000.5`) or ISO 8601 (`2026-12-06T04:00:00Z`; no zone = UTC)."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise QueryError(
                f"{name}={text[:40]!r}: give Unix seconds or an ISO 8601 time such as 2026-12-06T04:00:00Z"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        value = parsed.timestamp()
    if not math.isfinite(value) or not 0 <= value <= LATEST_TIME:
        raise QueryError(f"{name}={text[:40]!r}: a time between 1970 and 9999")
    return value


def parse_limit(params: Mapping[str, str], default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    text = params.get("limit")
    if text is None:
        return default
    try:
        limit = int(text)
    except ValueError:
        raise QueryError(f"limit={text[:40]!r}: a whole number from 1 to {maximum}") from None
    if not 1 <= limit <= maximum:
        raise QueryError(f"limit={limit}: a whole number from 1 to {maximum}")
    return limit


def check_known(params: Mapping[str, str], known: tuple[str, ...]) -> None:
    """A misspelt parameter (`form=` for `from=`) is an error, not a silently ignored filter."""
    for key in params:
        if key not in known:
            raise QueryError(f"unknown parameter {key[:40]!r}: this endpoint takes {', '.join(known)}")


def parse_readings_query(params: Mapping[str, str], now: float | None = None) -> ReadingsQuery:
    """`from`, `to` (default: the last 24 hours up to now), `limit`, `format` (json or csv)."""
    check_known(params, ("from", "to", "limit", "format"))
    now = time.time() if now is None else now
    end = parse_time("to", params["to"]) if "to" in params else now
    start = parse_time("from", params["from"]) if "from" in params else max(0.0, end - DEFAULT_RANGE_S)
    if start > end:
        raise QueryError("from is after to: give from <= to")
    if end - start > MAX_RANGE_S:
        raise QueryError(f"the range spans more than {MAX_RANGE_S / 86400:.0f} days: ask for less at a time")
    fmt = params.get("format", "json")
    if fmt not in FORMATS:
        raise QueryError(f"format={fmt[:40]!r}: one of {', '.join(FORMATS)}")
    return ReadingsQuery(start, end, parse_limit(params), fmt)


def parse_kid(text: str) -> bytes:
    """A device's key id in the URL: 32 hex digits (docs/protocol.md §1)."""
    kid = bytes.fromhex(text) if HEX_KID.fullmatch(text) else b""  # fromhex alone would allow spaces
    if len(kid) != keys.KEY_ID_SIZE:
        raise QueryError(
            f"device {text[:40]!r}: a key id is {2 * keys.KEY_ID_SIZE} hex digits (see /api/devices)"
        )
    return kid
