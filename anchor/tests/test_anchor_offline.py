"""The anchoring package without a chain: the key file, the outbox, the anchor tree, chain profiles, fees,
the CLI's key commands, and the verifier on untrusted documents (hypothesis: a clear error, never a crash)."""

from __future__ import annotations

import argparse
import copy
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from anchor_fixtures import Fleet
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinseal_anchor import chains, evm, outbox
from pinseal_anchor.anchorer import Anchorer
from pinseal_anchor.cli import add_commands
from pinseal_anchor.client import ChainClient
from pinseal_anchor.cost import daily_cost
from pinseal_anchor.keyfile import KeyFileError, address_of, generate_key, load_key
from pinseal_anchor.proof import anchor_part, anchor_proof, anchored_proof
from pinseal_anchor.sql import SqliteDatabase
from pinseal_anchor.tree import anchor_tree, root_from_path
from pinseal_anchor.verify import ProofError, verify_anchored_proof
from pinseal_gateway.broker import free_port

pytestmark = pytest.mark.timeout(120)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="pinseal-ingest")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


# --- the anchoring key -------------------------------------------------------------------------------


def test_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "anchor.key"
    address = generate_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_key(path).address == address == address_of(path)
    with pytest.raises(KeyFileError, match="never overwritten"):
        generate_key(path)


def test_loose_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "anchor.key"
    generate_key(path)
    for mode in (0o640, 0o604, 0o644):
        os.chmod(path, mode)
        with pytest.raises(KeyFileError, match=f"readable by group or others \\(mode {mode:04o}\\)"):
            load_key(path)
    os.chmod(path, 0o600)
    load_key(path)


def test_malformed_or_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no anchoring key"):
        load_key(tmp_path / "none.key")
    bad = tmp_path / "bad.key"
    bad.write_text("not hex\n")
    os.chmod(bad, 0o600)
    with pytest.raises(KeyFileError, match="32-byte hex"):
        load_key(bad)


def test_cli_keygen_and_address_print_the_address_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "k" / "anchor.key"
    assert run_cli("anchor", "keygen", "--key", str(path)) == 0
    address = capsys.readouterr().out.strip()
    assert run_cli("anchor", "address", "--key", str(path)) == 0
    assert capsys.readouterr().out.strip() == address
    secret = path.read_text().strip()
    assert secret not in address
    assert run_cli("anchor", "keygen", "--key", str(path)) == 1
    os.chmod(path, 0o644)
    assert run_cli("anchor", "address", "--key", str(path)) == 1
    assert "readable by group or others" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        run_cli("verify-proof")
    assert usage.value.code == 2
    doc = tmp_path / "doc.json"
    doc.write_text("{}")
    args = ["verify-proof", str(doc), "--rpc", "http://127.0.0.1:1", "--anchor-address", address]
    assert run_cli(*args, "--device-key", "zz") == 2
    assert run_cli(*args, "--device-key", "00" * 32) == 1


# --- outbox ------------------------------------------------------------------------------------------


def leaves(n: int, salt: int = 0) -> list[bytes]:
    return [bytes([salt, i]) * 16 for i in range(n)]


def test_outbox_seals_each_leaf_once(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "a.db")
    outbox.init_schema(db)
    outbox.init_schema(db)  # idempotent
    first = outbox.seal(db, leaves(3), now=100.0)
    assert first is not None and first.state == "pending" and first.leaf_count == 3
    assert first.root == anchor_tree(leaves(3)).root
    assert outbox.seal(db, leaves(3), now=101.0) is None  # all anchored already
    second = outbox.seal(db, [*leaves(3), *leaves(2, 1), leaves(2, 1)[0]], now=102.0)
    assert second is not None and second.leaf_count == 2  # only the new ones, duplicates dropped
    assert outbox.leaf_anchor(db, leaves(2, 1)[1]) == (second.id, 1)
    assert outbox.leaves_of(db, second.id) == leaves(2, 1)
    assert outbox.seal(db, [], now=103.0) is None
    with pytest.raises(ValueError, match="32-byte"):
        outbox.seal(db, [b"short"])
    status = outbox.status(db, now=110.0)
    assert (status.pending, status.sent, status.confirmed) == (2, 0, 0)
    assert status.oldest_unconfirmed_age_s == 10.0 and status.last_confirmed_block is None
    assert anchor_proof(db, leaves(3)[0]) is None  # not confirmed: no proof yet
    assert stat.S_IMODE((tmp_path / "a.db").stat().st_mode) == 0o600


def test_unanchored_leaves_from_the_callers_table(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "a.db")
    outbox.init_schema(db)
    db.execute("CREATE TABLE batches (hash BLOB PRIMARY KEY, received_at REAL NOT NULL)")
    stored = leaves(5)
    for i, leaf in enumerate(reversed(stored)):  # inserted newest first: the order comes from received_at
        db.execute("INSERT INTO batches VALUES (?, ?)", (leaf, 10.0 - i))
    source = outbox.unanchored_from(db, "batches", "hash", ["received_at", "hash"])
    assert source(10) == stored and source(2) == stored[:2]
    outbox.seal(db, source(3))
    assert source(10) == stored[3:]
    with pytest.raises(ValueError, match="identifier"):
        outbox.unanchored_from(db, "batches; DROP TABLE x", "hash", ["hash"])


def test_a_backlog_is_sealed_without_waiting_for_the_interval(tmp_path: Path) -> None:
    """Sealing is local: no node is needed (the client points nowhere)."""
    db = SqliteDatabase(tmp_path / "a.db")
    stored = leaves(7)

    def pending(limit: int) -> list[bytes]:
        done = outbox.anchored_already(db, stored)
        return [leaf for leaf in stored if leaf not in done][:limit]

    client = ChainClient("http://127.0.0.1:1", 31337)
    anchorer = Anchorer(db, pending, client, Account.create(), interval_s=600, max_leaves=3)
    counts = [a.leaf_count for a in filter(None, (anchorer.seal_due(1000.0 + i) for i in range(4)))]
    assert counts == [3, 3, 1]  # a full anchor means more wait: sealed at once, then the interval applies
    assert anchorer.seal_due(1500.0) is None and anchorer.seal_due(1700.0) is None


def test_outbox_refuses_other_schema_versions(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "a.db")
    outbox.init_schema(db)
    db.execute("UPDATE anchor_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(outbox.SchemaError, match="version 99"):
        outbox.init_schema(db)


def test_outbox_survives_a_failed_transaction(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "a.db")
    outbox.init_schema(db)
    with pytest.raises(RuntimeError), db.transaction():
        db.execute("INSERT INTO anchor_meta (key, value) VALUES ('x', 'y')")
        raise RuntimeError("crash inside")
    assert outbox.get_meta(db, "x") is None


# --- tree, chains, fees ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_anchor_paths_lead_to_the_root(n: int) -> None:
    tree = anchor_tree(leaves(n))
    for i, leaf in enumerate(leaves(n)):
        assert root_from_path(leaf, i, n, tree.inclusion_proof(i)) == tree.root
        assert root_from_path(leaf, (i + 1) % n, n, tree.inclusion_proof(i)) != tree.root or n == 1


def test_chain_profiles() -> None:
    assert chains.profile("base").chain_id == 8453 and chains.profile(4689).name == "iotex"
    assert {p.name for p in chains.PROFILES} >= {"ethereum", "base", "polygon", "iotex", "peaq", "hardhat"}
    assert chains.default_confirmations(137) == 256 and chains.default_confirmations(999999) == 64
    with pytest.raises(ValueError, match="known are"):
        chains.profile("dogechain")


def test_replacement_fees_are_at_least_an_eighth_higher() -> None:
    old = evm.Fees(1000, 100)
    bumped = evm.Fees(900, 90).bumped_over(old)
    assert bumped.max_fee * 8 > old.max_fee * 9 and bumped.priority_fee * 8 > old.priority_fee * 9
    assert evm.Fees(5000, 500).bumped_over(old) == evm.Fees(5000, 500)  # the node's higher fees win
    assert evm.Fees(5000, 500).capped(2000) == evm.Fees(2000, 500)
    assert daily_cost(600, 22_440, gas_price_wei=10**9) == {
        "anchors_per_day": 144.0,
        "gas_per_day": 3_231_360,
        "wei_per_day": 3_231_360 * 10**9,
    }


# --- the verifier on untrusted documents ---------------------------------------------------------------


def _document() -> tuple[dict[str, Any], Any]:
    """A well-formed anchored proof of a real bundle whose transaction exists on no chain."""
    fleet = Fleet()
    batches = [fleet.make_batch() for _ in range(3)]
    tree = anchor_tree([b.hash for b in batches])
    part = anchor_part(
        root=tree.root,
        leaf_index=1,
        tree_size=3,
        path=tree.inclusion_proof(1),
        chain_id=31337,
        mode="calldata",
        tx_hash=bytes(range(32)),
        block_number=5,
        block_hash=bytes(32),
    )
    doc = anchored_proof(batches[1].proof(0), batches[1].bundles[0], part)
    return doc, fleet.devices[0].key.public_key()


DOC, DEVICE_KEY = _document()
DEAD_RPC = f"http://127.0.0.1:{free_port()}"  # nothing listens: what reaches the chain step fails there
ADDRESS = "0x" + "ab" * 20

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def check_rejected(doc: Any) -> None:
    with pytest.raises(ProofError):
        verify_anchored_proof(doc, rpc_url=DEAD_RPC, anchor_address=ADDRESS, device_key=DEVICE_KEY)


def test_the_intact_document_reaches_the_chain_check() -> None:
    with pytest.raises(ProofError, match="cannot check the chain"):
        verify_anchored_proof(DOC, rpc_url=DEAD_RPC, anchor_address=ADDRESS, device_key=DEVICE_KEY)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_is_rejected_clearly(value: Any) -> None:
    check_rejected(value)
    check_rejected(json.dumps(value))


FIELDS = [
    ("version",),
    ("bundle",),
    ("batch",),
    ("anchor",),
    *(("batch", k) for k in DOC["batch"]),
    *(("anchor", k) for k in DOC["anchor"]),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), json_values)
def test_a_field_replaced_by_anything_is_rejected_clearly(where: tuple[str, ...], value: Any) -> None:
    doc = copy.deepcopy(DOC)
    target = doc
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    check_rejected(doc)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_flipped_characters_are_rejected_clearly(data: st.DataObject) -> None:
    text = bytearray(json.dumps(DOC).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text) - 1))
        text[i] = data.draw(st.integers(0, 255))
    check_rejected(bytes(text))  # undecodable bytes too: json's UnicodeDecodeError is a ValueError


def test_importing_the_chain_libraries_keeps_the_recursion_limit() -> None:
    """py_ecc (under web3 and eth_account) sets a 100,000 recursion limit at import; in a process that
    also decodes untrusted JSON, a document nested 200,000 deep then crashed it (a segmentation fault in
    json's C decoder) where it should raise. pinseal_anchor puts the limit back."""
    import subprocess
    import sys

    program = (
        "import sys, json; limit = sys.getrecursionlimit()\n"
        "import pinseal_anchor.client, pinseal_anchor.keyfile, pinseal_anchor.verify, web3, eth_account\n"
        "assert sys.getrecursionlimit() == limit, sys.getrecursionlimit()\n"
        "try:\n    json.loads('[' * 200_000)\nexcept RecursionError:\n    print('refused')\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "refused", done.stderr[-2000:]
