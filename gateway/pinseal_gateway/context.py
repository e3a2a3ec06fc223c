"""What every part of the running gateway shares: configuration, database, key, metrics, broker link."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinseal_gateway.broker_link import BrokerLink

if TYPE_CHECKING:
    from pinseal_gateway.config import GatewayConfig
    from pinseal_gateway.metrics import Metrics
    from pinseal_gateway.store.db import Database


@dataclass
class GatewayContext:
    config: GatewayConfig
    db: Database
    gateway_key: Ed25519PrivateKey
    gateway_kid: bytes
    metrics: Metrics
    broker_link: BrokerLink = field(default_factory=BrokerLink)
