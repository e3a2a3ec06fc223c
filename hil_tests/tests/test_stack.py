"""`make run` end to end: broker, gateway, network ingest and devices as real processes, twice over.

The second run must continue the first (device counters, gateway batch chain): nothing rejected, every
bundle of both runs at the network ingest exactly once.
"""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from pinseal_hil import run


@pytest.mark.broker
def test_make_run_flows_and_a_second_run_continues(tmp_path, capsys) -> None:
    argv = ["--workdir", str(tmp_path), "--devices", "2", "--interval-s", "0.5", "--batch-interval-s", "1"]
    assert run.main([*argv, "--duration", "5"]) == 0
    first = capsys.readouterr().out
    assert re.search(r"stopped; ([1-9]\d*) acks received and verified", first), first
    assert run.main([*argv, "--duration", "5"]) == 0
    second = capsys.readouterr().out
    assert re.search(r"stopped; ([1-9]\d*) acks received and verified", second), second

    gateway = sqlite3.connect(tmp_path / "gateway" / "gateway.sqlite")
    (rejections,) = gateway.execute("SELECT count(*) FROM rejections").fetchone()
    (stored,) = gateway.execute("SELECT count(*) FROM bundles").fetchone()
    (forwarded,) = gateway.execute(
        "SELECT count(*) FROM bundles b JOIN uplink_outbox o ON o.batch_no = b.batch_id"
        " WHERE o.sent_at IS NOT NULL"
    ).fetchone()
    assert rejections == 0 and stored >= 10
    ingest = sqlite3.connect(tmp_path / "ingest" / "ingest.sqlite")
    (at_network,) = ingest.execute("SELECT count(*) FROM bundles").fetchone()
    (distinct,) = ingest.execute("SELECT count(DISTINCT hash) FROM bundles").fetchone()
    assert at_network == distinct == forwarded > 0  # what the gateway forwarded arrived, each once
    states = [json.loads(p.read_text()) for p in (tmp_path / "devices").glob("*.state")]
    assert all(state["boot"] == 2 for state in states)  # the second run was a new boot of each device
