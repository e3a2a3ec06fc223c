"""The anchoring commands of `pinseal-ingest`: `verify-proof` and `anchor keygen|address|deploy`.

`add_commands(subparsers)` registers them on the ingest's parser; each handler takes the parsed Namespace
and returns the exit code: 0 when it holds / succeeded, 1 when the proof does not hold or the operation
failed (with the reason on stderr), 2 for usage errors (argparse's own, and bad key or address arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pinseal_protocol import keys

# The chain libraries (web3, eth_account) are imported by the handlers that use them: they take a second
# to import, and every other `pinseal-ingest` command (stats, devices, run without anchoring) needs none.

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_commands(subparsers: Any) -> Any:
    """Register `verify-proof` and `anchor ...` on an argparse subparsers object (handler in `handler`);
    returns the `anchor` command's own subparsers, for the caller's commands that need its database."""
    verify = subparsers.add_parser(
        "verify-proof",
        help="check an anchored proof document end to end (device signature to block)",
        description="The trust anchors (anchoring address, contract, device key) come from these arguments, "
        "never from the document.",
    )
    verify.add_argument("file", help="the proof document (JSON), - for stdin")
    verify.add_argument("--rpc", required=True, help="JSON-RPC URL of a node of the anchor's chain")
    verify.add_argument("--anchor-address", required=True, help="the anchoring address to trust")
    verify.add_argument("--contract", help="the PinsealAnchor contract to trust (contract-mode anchors)")
    verify.add_argument("--device-key", required=True, help="the device's Ed25519 public key (64 hex)")
    verify.add_argument(
        "--gateway-key", help="the gateway's Ed25519 public key (64 hex): checks its signature"
    )
    verify.add_argument("--confirmations", type=int, help="depth required (default: the chain profile's)")
    verify.add_argument(
        "--chain-id", type=int, help="the chain the anchor must be on (default: any the RPC serves)"
    )
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(handler=verify_proof_command)

    anchor = subparsers.add_parser("anchor", help="the anchoring key and contract")
    actions = anchor.add_subparsers(dest="anchor_action", required=True)
    keygen = actions.add_parser("keygen", help="create the anchoring key (file 0600) and print its address")
    keygen.add_argument("--key", required=True, help="where the key file goes")
    keygen.set_defaults(handler=keygen_command)
    address = actions.add_parser("address", help="print the anchoring key's address")
    address.add_argument("--key", required=True)
    address.set_defaults(handler=address_command)
    deploy = actions.add_parser("deploy", help="deploy the PinsealAnchor contract, print its address")
    deploy.add_argument("--rpc", required=True)
    deploy.add_argument("--key", required=True)
    deploy.add_argument("--chain-id", type=int, help="refuse if the RPC serves another chain")
    deploy.set_defaults(handler=deploy_command)
    return actions


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(message, file=sys.stderr)
    return code


def _public_key(text: str | None, name: str) -> Any:
    if text is None:
        return None
    try:
        return keys.load_public_key(bytes.fromhex(text.removeprefix("0x")))
    except ValueError as exc:
        raise ValueError(f"{name} is not an Ed25519 public key in hex ({exc})") from exc


def verify_proof_command(args: argparse.Namespace) -> int:
    from pinseal_anchor.verify import ProofError, verify_anchored_proof

    try:
        device_key = _public_key(args.device_key, "--device-key")
        gateway_key = _public_key(args.gateway_key, "--gateway-key")
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if args.confirmations is not None and args.confirmations < 1:
        return _fail("--confirmations is at least 1", EXIT_USAGE)
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"cannot read {args.file}: {exc}", EXIT_USAGE)
    try:
        result = verify_anchored_proof(
            text,
            rpc_url=args.rpc,
            anchor_address=args.anchor_address,
            contract=args.contract,
            device_key=device_key,
            gateway_key=gateway_key,
            min_confirmations=args.confirmations,
            chain_id=args.chain_id,
        )
    except ProofError as exc:
        if args.json:
            print(json.dumps({"holds": False, "reason": str(exc)}))
        return _fail(f"the proof does not hold: {exc}")
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        print(
            f"the proof holds: bundle {result.bundle_hash.hex()} existed by block {result.block_number} "
            f"(timestamp {result.block_timestamp}) on chain {result.chain_id}, "
            f"{result.confirmations} confirmations, tx {result.tx_hash.hex()}"
        )
        for check in result.checks:
            print(f"  ok: {check}")
    return EXIT_OK


def keygen_command(args: argparse.Namespace) -> int:
    from pinseal_anchor.keyfile import KeyFileError, generate_key

    try:
        print(generate_key(args.key))
    except (KeyFileError, OSError) as exc:
        return _fail(str(exc))
    return EXIT_OK


def address_command(args: argparse.Namespace) -> int:
    from pinseal_anchor.keyfile import KeyFileError, address_of

    try:
        print(address_of(args.key))
    except KeyFileError as exc:
        return _fail(str(exc))
    return EXIT_OK


def deploy_command(args: argparse.Namespace) -> int:
    from pinseal_anchor.client import ChainClient, RpcError
    from pinseal_anchor.deploy import deploy_contract
    from pinseal_anchor.keyfile import KeyFileError, load_key

    try:
        account = load_key(args.key)
        print(deploy_contract(ChainClient(args.rpc, args.chain_id), account))
    except (KeyFileError, RpcError) as exc:
        return _fail(str(exc))
    return EXIT_OK
