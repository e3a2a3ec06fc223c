"""Totals for `/status` and `pinseal-gateway status`: what the gateway holds, in a few aggregate queries."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class Totals:
    bundles: int
    unbatched: int  # stored bundles not in a sealed batch yet
    readings: int
    outbox: int  # batches not yet accepted by the network ingest
    batches: int


def totals(conn: sqlite3.Connection) -> Totals:
    (bundles, unbatched, readings) = conn.execute(
        "SELECT count(*), coalesce(sum(batch_id IS NULL), 0), coalesce(sum(n_readings), 0) FROM bundles"
    ).fetchone()
    (outbox,) = conn.execute("SELECT count(*) FROM uplink_outbox WHERE sent_at IS NULL").fetchone()
    (batches,) = conn.execute("SELECT count(*) FROM batches").fetchone()
    return Totals(bundles, unbatched, readings, outbox, batches)
