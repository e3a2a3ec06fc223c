"""The device registry: which public keys may send bundles, and their MQTT credentials.

Only a hash of a device's MQTT password is stored, in Mosquitto's own PBKDF2-SHA512 format, so the
broker's password file can be regenerated from the registry at any time without the gateway ever
keeping a device's password.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
import sqlite3
import time
from dataclasses import dataclass

from pinseal_protocol import keys

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    kid BLOB PRIMARY KEY,
    public_key BLOB NOT NULL,
    label TEXT,
    mqtt_password_hash TEXT,
    expected_interval_s INTEGER,
    added_at REAL NOT NULL,
    revoked_at REAL
);
"""

# Mosquitto 2.0's `$7$` hash: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte hash, base64 with padding.
PBKDF2_ITERATIONS = 101
SALT_SIZE = 12


class DeviceError(Exception):
    """A registry operation that cannot be done: duplicate, unknown or already revoked device."""


@dataclass(frozen=True)
class Device:
    kid: bytes
    public_key: bytes
    label: str | None
    mqtt_password_hash: str | None
    expected_interval_s: int | None
    added_at: float
    revoked_at: float | None

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def mosquitto_password_hash(
    password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """The password-file hash Mosquitto 2.0 writes (`mosquitto_passwd`) and checks."""
    salt = secrets.token_bytes(SALT_SIZE) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def new_mqtt_password() -> str:
    """A fresh random MQTT password (shown once, never stored)."""
    return secrets.token_urlsafe(24)


def add_device(
    conn: sqlite3.Connection,
    public_key: bytes,
    *,
    label: str | None,
    expected_interval_s: int | None,
    password_hash: str,
    now: float | None = None,
) -> Device:
    """Register a device key; refuses a key that is already registered (even revoked)."""
    keys.check_public_key(public_key)  # ValueError for a wrong length, a small-order or invalid point
    kid = keys.key_id(public_key)
    added_at = time.time() if now is None else now
    try:
        with conn:
            conn.execute(
                "INSERT INTO devices (kid, public_key, label, mqtt_password_hash, expected_interval_s, "
                "added_at) VALUES (?, ?, ?, ?, ?, ?)",
                (kid, public_key, label, password_hash, expected_interval_s, added_at),
            )
    except sqlite3.IntegrityError as exc:
        raise DeviceError(f"device {kid.hex()} is already registered") from exc
    return Device(kid, public_key, label, password_hash, expected_interval_s, added_at, None)


def revoke_device(conn: sqlite3.Connection, kid: bytes, now: float | None = None) -> None:
    """Mark a device revoked: its bundles are rejected from now on, its stored ones stay."""
    with conn:
        row = conn.execute("SELECT revoked_at FROM devices WHERE kid = ?", (kid,)).fetchone()
        if row is None:
            raise DeviceError(f"device {kid.hex()} is not registered")
        if row[0] is not None:
            raise DeviceError(f"device {kid.hex()} is already revoked")
        conn.execute(
            "UPDATE devices SET revoked_at = ? WHERE kid = ?", (time.time() if now is None else now, kid)
        )


def list_devices(conn: sqlite3.Connection) -> list[Device]:
    rows = conn.execute(
        "SELECT kid, public_key, label, mqtt_password_hash, expected_interval_s, added_at, revoked_at "
        "FROM devices ORDER BY added_at, kid"
    ).fetchall()
    return [Device(*row) for row in rows]


def get_device(conn: sqlite3.Connection, kid: bytes) -> Device | None:
    row = conn.execute(
        "SELECT kid, public_key, label, mqtt_password_hash, expected_interval_s, added_at, revoked_at "
        "FROM devices WHERE kid = ?",
        (kid,),
    ).fetchone()
    return None if row is None else Device(*row)


def registry_fingerprint(conn: sqlite3.Connection) -> tuple[object, ...]:
    """A cheap summary of the devices table that changes with any add or revoke (one row, no scan
    of keys), so a running gateway can poll for registry changes every second."""
    return tuple(conn.execute("SELECT count(*), max(added_at), total(revoked_at) FROM devices").fetchone())


@dataclass(frozen=True)
class LastHeard:
    """A registered, non-revoked device and when its last accepted bundle arrived (None: never)."""

    kid: bytes
    label: str | None
    added_at: float
    expected_interval_s: int | None
    last_seen: float | None


def last_heard(conn: sqlite3.Connection) -> list[LastHeard]:
    """Every non-revoked device with the time of its last bundle, ordered by key id (stable reports).

    Last bundle = `device_state.last_seen`, or the newest `bundles.received_at` if the state row has
    no time.
    """
    rows = conn.execute(
        "SELECT d.kid, d.label, d.added_at, d.expected_interval_s, "
        "  COALESCE(s.last_seen, (SELECT MAX(b.received_at) FROM bundles b WHERE b.kid = d.kid)) "
        "FROM devices d LEFT JOIN device_state s ON s.kid = d.kid "
        "WHERE d.revoked_at IS NULL ORDER BY d.kid"
    ).fetchall()
    return [
        LastHeard(bytes(kid), label, float(added_at), interval, None if seen is None else float(seen))
        for kid, label, added_at, interval, seen in rows
    ]


LEARN_FROM_BUNDLES = 9
"""Bundles whose arrival gaps give a device's learned interval (their median: one late or bunched
bundle does not move it)."""


def learned_interval_s(conn: sqlite3.Connection, kid: bytes) -> float | None:
    """How often the device has actually been sending: the median gap between the arrivals of its last
    LEARN_FROM_BUNDLES bundles (by seq), or None with fewer than three."""
    rows = conn.execute(
        "SELECT received_at FROM bundles WHERE kid = ? ORDER BY seq DESC LIMIT ?", (kid, LEARN_FROM_BUNDLES)
    ).fetchall()
    times = sorted(float(t) for (t,) in rows)
    if len(times) < 3:
        return None
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    return gaps[len(gaps) // 2]
