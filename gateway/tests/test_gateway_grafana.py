"""docs/grafana/pinseal-gateway.json queries only metrics the gateway exports, under their exported names."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pinseal_gateway.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "pinseal-gateway.json"
SERIES = re.compile(r"\bpinseal_gateway_[a-z_]+")


def exported_series() -> set[str]:
    """Every sample name /metrics can carry (counters' _total, histograms' _bucket/_sum/_count)."""
    metrics = Metrics()
    metrics.rejected.labels("bad_signature").inc()  # labelled families show samples once used
    metrics.uplink_dead_letters.labels("unknown_device").inc()
    metrics.time_flags.labels("future").inc()
    metrics.device_last_seen.labels("00" * 16).set(1)
    metrics.storage_full.labels("store").set(0)
    names = set()
    for family in text_string_to_metric_families(metrics.render().decode()):
        names.update(sample.name for sample in family.samples)
    return names


def test_every_panel_queries_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_series()
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in SERIES.findall(target["expr"])
    }
    assert queried, "no pinseal metric queried"
    assert queried <= exported, sorted(queried - exported)
    assert len({p["title"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])  # importable anywhere
