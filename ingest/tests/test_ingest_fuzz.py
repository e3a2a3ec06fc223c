"""Fuzzing POST /v1/batches: whatever the body, never a server error and never anything stored."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_fixtures import Gateway, IngestServer, key, register, sim_device, table_counts

from pinseal_protocol import dcbor

GATEWAY, DEVICE = Gateway(key(1)), sim_device(2)
VALID = [GATEWAY.make([DEVICE.seal(), DEVICE.seal(2)], advance=False)]
VALID.append(GATEWAY.make([DEVICE.seal(seq=0, prev=bytes(16), advance=False)], "proofs", advance=False))
EMPTY = {"batches": 0, "leaves": 0, "bundles": 0}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestServer]:
    db: Path = tmp_path_factory.mktemp("fuzz") / "ingest.sqlite"
    register(db, gateways=[GATEWAY], devices=[DEVICE])
    with IngestServer(db, max_body=64 * 1024) as server:
        yield server


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid uplink body with bytes flipped, replaced, inserted or cut."""
    body = bytearray(draw(st.sampled_from(VALID)).body)
    for _ in range(draw(st.integers(1, 4))):
        if not body:
            break
        where = draw(st.integers(0, len(body) - 1))
        action = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if action == "flip":
            body[where] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            body[where] = draw(st.integers(0, 255))
        elif action == "insert":
            body[where:where] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del body[where : where + draw(st.integers(1, 8))]
        else:
            del body[where:]
    return bytes(body)


def _flip(data: bytes, where: int, bit: int) -> bytes:
    where %= len(data)
    return data[:where] + bytes([data[where] ^ (1 << bit)]) + data[where + 1 :]


@st.composite
def restructured(draw: st.DrawFn) -> bytes:
    """A valid body re-encoded with one inner item changed, so the deeper checks (root, proofs,
    device signatures, header fields) are reached rather than the CBOR parser."""
    message = dcbor.decode(draw(st.sampled_from(VALID)).body)
    where, bit = draw(st.integers(0, 10_000)), draw(st.integers(0, 7))
    items = message[2] if 2 in message else message[3]
    target = draw(st.sampled_from(["header", "item", "drop", "duplicate", "reverse"]))
    if target == "header":
        message[1] = _flip(message[1], where, bit)
    elif target == "item" and 2 in message:
        i = where % len(items)
        items[i] = _flip(items[i], where // 7, bit)
    elif target == "item":
        proof = items[where % len(items)]
        part = draw(st.integers(0, 2))
        if part == 0:
            proof[0] += 1 + bit
        elif part == 1:
            proof[1] = _flip(proof[1], where, bit)
        elif proof[2]:
            proof[2][0] = _flip(proof[2][0], where, bit)
        else:
            proof[2].append(bytes(32))
    elif target == "drop" and len(items) > 1:
        del items[where % len(items)]
    elif target == "duplicate":
        items.append(items[where % len(items)])
    elif len(items) > 1:
        items.reverse()
    else:
        items.append(items[0])
    return dcbor.encode(message)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=300), mutated(), restructured()))
def test_any_other_body_is_rejected_cleanly(fuzz_server: IngestServer, body: bytes) -> None:
    if body in {v.body for v in VALID}:
        return
    response = fuzz_server.post(body)
    assert response.status in (400, 403, 409, 413, 422), response.body
    assert isinstance(response.body, dict) and isinstance(response.body.get("reason"), str)
    assert table_counts(fuzz_server.db_path) == EMPTY
