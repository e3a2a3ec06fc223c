"""`make run` end to end: broker, gateway, network ingest and virtual boards running the firmware, twice over.

The first run provisions blank boards with pinseal-provision (deploy, on-device key, certificate,
registration, self-test); the second finds them enrolled and must continue them (device counters, the
gateway's batch chain): nothing rejected, every bundle of both runs at the network ingest exactly once.
"""

from __future__ import annotations

import re
import sqlite3

import pytest

from pinseal_devkit import run


@pytest.mark.vm
@pytest.mark.broker
def test_make_run_provisions_boards_flows_and_a_second_run_continues(tmp_path, capsys) -> None:
    argv = ["--workdir", str(tmp_path), "--boards", "2", "--interval-s", "1", "--per-bundle", "2"]
    argv += ["--batch-interval-s", "1", "--speed", "2"]
    assert run.main([*argv, "--duration", "10"]) == 0
    first = capsys.readouterr().out
    enrolled = re.findall(r"provision \| .*: key id [0-9a-f]{32} made on the board, self-test passed", first)
    assert len(enrolled) == 2, first
    assert re.search(r"stopped; ([1-9]\d*) bundles", first), first
    assert "gateway ack verified" in first
    # one name per board: console, registry label, flash folder; verified readings shown in units
    assert re.search(r"^ board1 \| pinseal: device [0-9a-f]{32}", first, re.M), first
    assert re.search(r"^reading \| board[12] -?\d+\.\d °C \d+ %RH \d+\.\d hPa", first, re.M), first
    assert (tmp_path / "boards" / "board2" / "flash").is_dir()
    assert run.main([*argv, "--duration", "10"]) == 0
    second = capsys.readouterr().out
    assert "made on the board" not in second  # enrolled once, kept
    assert re.search(r"stopped; ([1-9]\d*) bundles", second), second
    assert re.search(r"device [0-9a-f]{32} boot 2 ", second)  # the second run was a new boot of each board

    gateway = sqlite3.connect(tmp_path / "gateway" / "gateway.sqlite")
    (rejections,) = gateway.execute("SELECT count(*) FROM rejections").fetchone()
    (stored,) = gateway.execute("SELECT count(*) FROM bundles").fetchone()
    (gaps,) = gateway.execute("SELECT count(*) FROM bundles WHERE chain_gap != 0").fetchone()
    (forwarded,) = gateway.execute(
        "SELECT count(*) FROM bundles b JOIN uplink_outbox o ON o.batch_no = b.batch_id"
        " WHERE o.sent_at IS NOT NULL"
    ).fetchone()
    assert rejections == 0 and gaps == 0 and stored >= 6
    labels = {label for (label,) in gateway.execute("SELECT label FROM devices")}
    assert labels == {"board1", "board2"}
    ingest = sqlite3.connect(tmp_path / "ingest" / "ingest.sqlite")
    (at_network,) = ingest.execute("SELECT count(*) FROM bundles").fetchone()
    (distinct,) = ingest.execute("SELECT count(DISTINCT hash) FROM bundles").fetchone()
    assert at_network == distinct == forwarded > 0  # what the gateway forwarded arrived, each once
