"""Transports that feed the pipeline, each a `Link`: `mqtt` (the broker) and `serial` (wired boards)."""
