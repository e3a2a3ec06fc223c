"""Prometheus metrics of one gateway, on their own registry.

A private `CollectorRegistry` per `Metrics` (not prometheus-client's global one) lets tests and
benchmarks build many gateways in one process without name clashes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "pinseal_gateway_"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.bundles_accepted = Counter(
            f"{PREFIX}bundles_accepted", "Bundles verified and stored", registry=r
        )
        self.readings_accepted = Counter(
            f"{PREFIX}readings_accepted", "Readings in stored bundles", registry=r
        )
        self.rejected = Counter(f"{PREFIX}rejected", "Messages rejected, by reason", ["reason"], registry=r)
        self.duplicates = Counter(f"{PREFIX}duplicates", "Bundles received again and re-acked", registry=r)
        self.conflicts = Counter(f"{PREFIX}conflicts", "Conflicting bundles kept as evidence", registry=r)
        self.chain_gaps = Counter(
            f"{PREFIX}chain_gaps", "Bundles stored whose prev links nothing stored", registry=r
        )
        self.time_flags = Counter(
            f"{PREFIX}time_flags", "Bundles stored with implausible times", ["flag"], registry=r
        )
        self.acks_sent = Counter(f"{PREFIX}acks_sent", "Signed acks published", registry=r)
        self.rejections_sent = Counter(
            f"{PREFIX}rejections_sent",
            "Signed rejections published: a device told its bundle is refused for good (protocol §5.1)",
            ["reason"],
            registry=r,
        )
        self.batch_latency_seconds = Histogram(
            f"{PREFIX}batch_latency_seconds",
            "From a bundle's arrival to its batch being sealed",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, float("inf")),
            registry=r,
        )
        self.batches_sealed = Counter(f"{PREFIX}batches_sealed", "Merkle batches sealed", registry=r)
        self.outbox_depth = Gauge(f"{PREFIX}outbox_depth", "Batches waiting in the uplink outbox", registry=r)
        self.uplink_sent = Counter(f"{PREFIX}uplink_sent", "Batches the network ingest confirmed", registry=r)
        self.uplink_failures = Counter(f"{PREFIX}uplink_failures", "Failed uplink attempts", registry=r)
        self.uplink_dead_letters = Counter(
            f"{PREFIX}uplink_dead_letters",
            "Bundles the network refused for good, kept out of every batch since, by reason",
            ["reason"],
            registry=r,
        )
        self.uplink_held_elsewhere = Counter(
            f"{PREFIX}uplink_held_elsewhere",
            "Bundles the network already held from elsewhere, counted as delivered",
            registry=r,
        )
        self.uplink_resealed_batches = Counter(
            f"{PREFIX}uplink_resealed_batches",
            "Unsent batches superseded by a reseal after the network refused a batch (413, 422)",
            registry=r,
        )
        self.device_last_seen = Gauge(
            f"{PREFIX}device_last_seen", "Unix time of a device's last valid bundle", ["kid"], registry=r
        )
        self.device_last_ack = Gauge(
            f"{PREFIX}device_last_ack", "Unix time of the last ack published to a device", ["kid"], registry=r
        )
        self.last_ack: dict[bytes, float] = {}
        """kid -> time of its last published ack (this run): what the dashboard shows."""
        self.devices_silent = Gauge(
            f"{PREFIX}devices_silent", "Devices silent beyond their interval", registry=r
        )
        self.group_size = Histogram(
            f"{PREFIX}group_size",
            "Messages committed per transaction",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, float("inf")),
            registry=r,
        )
        self.serial_bundles = Counter(
            f"{PREFIX}serial_bundles", "Bundles read off serial ports and submitted", registry=r
        )
        self.serial_frames_dropped = Counter(
            f"{PREFIX}serial_frames_dropped",
            "Serial frames dropped, by reason (line damage, undecodable, busy): the device resends",
            ["reason"],
            registry=r,
        )
        self.serial_ports_open = Gauge(
            f"{PREFIX}serial_port_open", "1 while a configured serial port is open", ["port"], registry=r
        )
        self.queue_depth = Gauge(f"{PREFIX}queue_depth", "Messages received, not yet processed", registry=r)
        self.storage_full = Gauge(
            f"{PREFIX}storage_full",
            "1 while a writer (store, batcher, uplink) is paused on a full disk, else 0",
            ["part"],
            registry=r,
        )
        self.storage_write_failures = Counter(
            f"{PREFIX}storage_write_failures",
            "Failed tries of a paused writer, by part and error (full: disk full; other)",
            ["part", "error"],
            registry=r,
        )
        self.mqtt_subscribed = Gauge(
            f"{PREFIX}mqtt_subscribed", "1 while subscribed to the devices' up topics, else 0", registry=r
        )

        # The BLE intake (intake/ble): what the scanner, the sessions and the per-device rules did.
        self.ble_connections = Counter(
            f"{PREFIX}ble_connections",
            "BLE sessions by how they ended: drained, hung_up (by the device, between transfers), idle, "
            "failed, refused (key id not confirmed)",
            ["outcome"],
            registry=r,
        )
        self.ble_sessions = Gauge(f"{PREFIX}ble_sessions", "BLE connections open now", registry=r)
        self.ble_bundles_received = Counter(
            f"{PREFIX}ble_bundles_received", "Bundles reassembled from BLE notifications", registry=r
        )
        self.ble_resend_requests = Counter(
            f"{PREFIX}ble_resend_requests", "Resend requests written for missing BLE chunks", registry=r
        )
        self.ble_watchdog_restarts = Counter(
            f"{PREFIX}ble_watchdog_restarts",
            "Discovery restarts after BlueZ reported no advertisement for ble.scan_watchdog_s",
            registry=r,
        )
        self.ble_refused_devices = Counter(
            f"{PREFIX}ble_refused_devices",
            "Advertising devices never connected to, counted once each, by reason (unregistered, revoked)",
            ["reason"],
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format for `/metrics`."""
        return generate_latest(self.registry)
