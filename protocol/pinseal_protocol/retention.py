"""Bounded rejection tables: pruning by count and age, and a tally of every rejection not (or no longer)
stored, so the counts stay whole (gateway and ingest alike).

Both keep rejections in a table `rejections` with an `id INTEGER PRIMARY KEY` (insertion order), a
`reason` and a `received_at` Unix time. The tally lives in the same database and is written in the same
transaction as what it accounts for, so a rolled-back write leaves it exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

TALLY_SCHEMA = """
CREATE TABLE IF NOT EXISTS rejections_unstored (
    reason TEXT NOT NULL,
    why TEXT NOT NULL,  -- rate_limited (never stored) or pruned (stored, later removed by retention)
    n INTEGER NOT NULL,
    PRIMARY KEY (reason, why)
)
"""


class SqlConnection(Protocol):
    """What these functions need of a connection: sqlite3's, or the ingest's `Database` (either engine)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...


RATE_LIMITED = "rate_limited"
PRUNED = "pruned"


def ensure_tally(conn: SqlConnection) -> None:
    conn.execute(TALLY_SCHEMA)


def count_unstored(conn: SqlConnection, counts: Mapping[tuple[str, str], int]) -> None:
    """Add `counts` ((reason, why) -> n) to the tally, in the caller's transaction."""
    conn.executemany(
        "INSERT INTO rejections_unstored (reason, why, n) VALUES (?, ?, ?)"
        " ON CONFLICT (reason, why) DO UPDATE SET n = rejections_unstored.n + excluded.n",
        [(reason, why, n) for (reason, why), n in counts.items() if n],
    )


def unstored(conn: SqlConnection) -> dict[tuple[str, str], int]:
    """The tally: (reason, why) -> rejections counted but not in the table."""
    return {(r, w): n for r, w, n in conn.execute("SELECT reason, why, n FROM rejections_unstored")}


def prune(conn: SqlConnection, *, max_rows: int, max_age_s: float, now: float) -> dict[str, int]:
    """Delete rejections older than `max_age_s` and all but the newest `max_rows`, tallying them as
    pruned; returns reason -> rows deleted. One scan of a table this keeps bounded."""
    cut = conn.execute("SELECT id FROM rejections ORDER BY id DESC LIMIT 1 OFFSET ?", (max_rows,)).fetchone()
    where = "received_at < ? OR id <= ?"
    args = (now - max_age_s, cut[0] if cut else -1)
    deleted = dict(
        conn.execute(f"SELECT reason, count(*) FROM rejections WHERE {where} GROUP BY reason", args)
    )
    if deleted:
        conn.execute(f"DELETE FROM rejections WHERE {where}", args)
        count_unstored(conn, {(reason, PRUNED): n for reason, n in deleted.items()})
    return deleted
