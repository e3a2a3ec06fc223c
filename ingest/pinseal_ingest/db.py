"""The ingest's database, whatever the engine: `connect` and the encoding of sequence numbers.

`connect` takes a file path (SQLite, the default for one machine) or a `postgresql://` URL (the
network's database, shared by every ingest process and host); storage/ holds both engines.
"""

from pathlib import Path

from pinseal_ingest.storage import Database, open_database
from pinseal_ingest.storage.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Database", "connect", "seq_key", "seq_value"]


def connect(target: str | Path) -> Database:
    """Open (creating if needed) the database and bring its schema to this ingest's version."""
    return open_database(target)


def seq_key(value: int) -> bytes:
    """An unsigned 64-bit sequence number as a sortable byte string."""
    return value.to_bytes(8, "big")


def seq_value(key: bytes) -> int:
    """Inverse of `seq_key`."""
    return int.from_bytes(key, "big")
