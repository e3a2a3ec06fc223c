"""The gateway's connection to its MQTT broker, as owners see it in `/status` and on the dashboard.

"No readings" has two very different causes, devices that stopped and a gateway that lost its broker;
the metrics gauge told Prometheus which, but a person looking at `/status` could not tell. The MQTT intake
records here each time it connects, subscribes, drops or is refused, with the reason it logged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass
class BrokerLink:
    host: str = ""
    port: int = 0
    connected: bool = False
    since: float | None = None
    """When the current state (connected or not) began; None before the first attempt."""
    last_error: str | None = None

    def up(self, now: float | None = None) -> None:
        """Connected and subscribed: bundles can arrive."""
        if not self.connected:
            self.connected, self.since = True, time.time() if now is None else now

    def down(self, reason: str, now: float | None = None) -> None:
        self.last_error = reason
        if self.connected or self.since is None:
            self.connected, self.since = False, time.time() if now is None else now

    def as_status(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "connected": self.connected,
            "since": self.since,
            "last_error": self.last_error,
        }
