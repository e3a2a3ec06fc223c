"""The hardening suite's results: a row per scenario and the one screen CI prints (hil_tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RESULTS: list[ScenarioResult] = []
"""Every finished scenario of this pytest process, in order (the summary's rows)."""


@dataclass
class ScenarioResult:
    """One scenario's accounting, in readings (a bundle carries `per_bundle` of them)."""

    name: str
    produced: int = 0
    accepted_bundles: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    stored_at_ingest: int = 0
    lost: int = 0
    duplicated: int = 0
    altered: int = 0
    unexpected: int = 0
    worst_ack_latency_s: float = 0.0
    wall_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return self.produced == self.stored_at_ingest and not (
            self.lost or self.duplicated or self.altered or self.unexpected
        )

    def line(self) -> str:
        rejected = ",".join(f"{k}={v}" for k, v in sorted(self.rejected.items())) or "-"
        notes = " ".join(f"{k}={v}" for k, v in self.notes.items())
        return (
            f"{self.name:<30} {self.produced:>7} {self.accepted_bundles:>7} {self.stored_at_ingest:>7} "
            f"{self.lost:>4} {self.duplicated:>4} {self.worst_ack_latency_s:>7.2f} {self.wall_s:>6.1f}  "
            f"{rejected} {notes}".rstrip()
        )


SUMMARY_HEADER = (
    f"{'scenario':<30} {'produced':>7} {'accepted':>7} {'ingest':>7} {'lost':>4} {'dup':>4} "
    f"{'ack_max':>7} {'wall_s':>6}  rejected by reason / notes"
)


def summary_text(results: list[ScenarioResult]) -> str:
    """The one screen CI prints: readings produced, bundles accepted, readings at the ingest, per scenario."""
    lines = ["pinseal hardening suite (produced and ingest in readings, accepted in bundles)", SUMMARY_HEADER]
    lines += [r.line() for r in results]
    bad = [r.name for r in results if not r.exact]
    lines.append(f"{len(results)} scenarios; not exact: {', '.join(bad) if bad else 'none'}")
    return "\n".join(lines) + "\n"
