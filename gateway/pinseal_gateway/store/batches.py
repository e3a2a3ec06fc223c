"""Batches (signed Merkle roots over accepted bundles) and the uplink outbox that forwards them."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch_no INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    header BLOB NOT NULL,
    root BLOB NOT NULL,
    count INTEGER NOT NULL,
    first_received REAL NOT NULL,
    last_received REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS uplink_outbox (
    batch_no INTEGER PRIMARY KEY REFERENCES batches(batch_no),
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at REAL
);
"""
