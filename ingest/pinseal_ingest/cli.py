"""`pinseal-ingest`: run the network ingest and manage whom it trusts.

    pinseal-ingest run --db PATH|URL [--listen 127.0.0.1:8700] [--max-body BYTES] [--workers N]
    pinseal-ingest gateways add PUBKEY_HEX [--label TEXT] | import FILE | list | revoke KID_HEX
    pinseal-ingest devices add PUBKEY_HEX [--label TEXT] | import FILE | list | revoke KID_HEX
    pinseal-ingest stats
    pinseal-ingest anchor keygen|address|deploy|status   (run --anchor-rpc, --anchor-key, --anchor-chain)
    pinseal-ingest verify-proof FILE --rpc URL --anchor-address A [--contract C] --device-key K

Every command takes `--db` (default: $PINSEAL_INGEST_DB, else ./pinseal-ingest.sqlite). `run` and the
commands that add create the database; `stats`, `list` and `revoke` need one that exists and say where
they looked otherwise (opening a missing file would create an empty one and report an empty network).
"""

import argparse
import asyncio
import io
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from pinseal_anchor import cli as anchor_cli
from pinseal_ingest import anchoring, bulk_import, db, registry, store
from pinseal_ingest.api import MAX_BODY
from pinseal_ingest.server import parse_listen, serve
from pinseal_ingest.storage import SchemaTooNew, is_url
from pinseal_ingest.workers import Supervisor, WorkerConfig
from pinseal_protocol import keys, labels
from pinseal_protocol.cli_parser import SuggestingParser, add_version

DEFAULT_DB = "pinseal-ingest.sqlite"
DEFAULT_LISTEN = "127.0.0.1:8700"
DB_ENV = "PINSEAL_INGEST_DB"


class MissingDatabase(ValueError):
    """A read-only command found no database at the path it was given."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.db, args.db_source = _db_path(getattr(args, "db", None))
    try:
        return int(args.handler(args))
    except (ValueError, OSError, SchemaTooNew) as exc:
        print(f"pinseal-ingest: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        help=f"SQLite database file, or a postgresql://USER@HOST:PORT/NAME URL (default: ${DB_ENV}, "
        f"else ./{DEFAULT_DB})",
    )
    parser = SuggestingParser(prog="pinseal-ingest", description=__doc__.split("\n")[0])
    add_version(parser, "pinseal-ingest")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", parents=[common], help="serve the HTTP API until SIGTERM")
    run.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT (default %(default)s)")
    run.add_argument("--max-body", type=int, default=MAX_BODY, help="largest accepted body in bytes")
    run.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="processes serving the port, verifying on every core (PostgreSQL lets them store at once; "
        "on SQLite they take turns) (default %(default)s)",
    )
    run.add_argument("--pid-file", help="with --workers: write the parent's and the workers' pids here")
    anchoring.add_run_options(run)
    run.set_defaults(handler=_run)

    for table in ("gateways", "devices"):
        group = commands.add_parser(table, help=f"the {table} registry")
        actions = group.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", parents=[common], help="register a public key")
        add.add_argument("public_key", help="raw Ed25519 public key, 64 hex digits")
        add.add_argument("--label")
        add.set_defaults(handler=_add, table=table)
        listing = actions.add_parser("list", parents=[common], help=f"the {table} (--json for scripts)")
        listing.add_argument("--json", action="store_true", help="a JSON array instead of lines")
        listing.set_defaults(handler=_list, table=table)
        revoke = actions.add_parser("revoke", parents=[common], help="reject everything new it signs")
        revoke.add_argument("kid", help="key id, 32 hex digits")
        revoke.set_defaults(handler=_revoke, table=table)
        imp = actions.add_parser(
            "import", parents=[common], help="a registry export: JSON array or JSON Lines, streamed"
        )
        imp.add_argument("file", help="the export (- reads standard input)")
        if table == "devices":
            imp.add_argument(
                "--fleet-key",
                help="the fleet's Ed25519 public key (64 hex): every entry's certificate must be signed "
                "by it and name the entry's key (provisioning exports the certificate)",
            )
        imp.set_defaults(handler=_import, table=table)

    stats = commands.add_parser("stats", parents=[common], help="totals as JSON")
    stats.set_defaults(handler=_stats)

    anchor_cli.add_commands(commands)  # verify-proof, anchor keygen|address|deploy
    anchor_actions = next(
        action
        for action in commands.choices["anchor"]._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    status = anchor_actions.add_parser("status", parents=[common], help="the anchoring outbox as JSON")
    status.set_defaults(handler=_anchor_status)
    return parser


def _db_path(given: str | None) -> tuple[str, str]:
    """The database path and where it came from, for messages."""
    if given:
        return given, "--db"
    from_env = os.environ.get(DB_ENV)
    if from_env:
        return from_env, f"${DB_ENV}"
    return DEFAULT_DB, f"the default (--db not given, ${DB_ENV} not set)"


def _existing_db(args: argparse.Namespace) -> str:
    if is_url(args.db):
        return str(args.db)  # a server: connecting tells whether the database is there
    if not Path(args.db).is_file():
        raise MissingDatabase(
            f"no ingest database at {Path(args.db).absolute()} (from {args.db_source}): pass --db with the "
            f"file `pinseal-ingest run` uses, or set ${DB_ENV}"
        )
    return str(args.db)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, not {text!r}")
    return value


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = parse_listen(args.listen)
    anchor_settings = anchoring.settings_from_args(args)
    db.connect(args.db).close()  # schema ready (or a clear error) before anything starts
    anchorer = None if anchor_settings is None else anchoring.start(str(args.db), anchor_settings)
    try:
        if args.workers == 1 and not args.pid_file:
            asyncio.run(serve(args.db, host, port, max_body=args.max_body))
            return 0
        config = WorkerConfig(str(args.db), host, port, args.max_body)
        return Supervisor(config, args.workers, Path(args.pid_file) if args.pid_file else None).run()
    finally:
        if anchorer is not None:
            anchorer.stop()


def _anchor_status(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from pinseal_anchor import outbox

    conn = db.connect(_existing_db(args))
    try:
        outbox.init_schema(conn)
        print(json.dumps(asdict(outbox.status(conn)), indent=2, sort_keys=True))
    finally:
        conn.close()
    return 0


def _add(args: argparse.Namespace) -> int:
    conn = db.connect(args.db)
    kid, new = registry.add(conn, args.table, registry.parse_public_key(args.public_key), label=args.label)
    conn.close()
    print(f"{kid.hex()} {'added' if new else 'already registered'}")
    return 0


def _when(timestamp: float | None) -> str:
    return "-" if timestamp is None else datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _list(args: argparse.Namespace) -> int:
    conn = db.connect(_existing_db(args))
    if args.json:
        rows = [
            {
                "kid": signer.kid.hex(),
                "public_key": signer.public_key.hex(),
                "label": signer.label,
                "added_at": signer.added_at,
                "revoked_at": signer.revoked_at,
            }
            for signer in registry.list_signers(conn, args.table)
        ]
        conn.close()
        print(json.dumps(rows, indent=2))
        return 0
    for signer in registry.list_signers(conn, args.table):
        state = f"revoked {_when(signer.revoked_at)}" if signer.revoked_at is not None else "active"
        label = labels.escape_label(signer.label or "")
        fields = (signer.kid.hex(), signer.public_key.hex(), _when(signer.added_at), state, label)
        print("  ".join(fields))
    conn.close()
    return 0


def _revoke(args: argparse.Namespace) -> int:
    kid = keys.parse_key_id_hex(args.kid)
    conn = db.connect(_existing_db(args))
    found = registry.revoke(conn, args.table, kid)
    conn.close()
    if not found:
        print(f"pinseal-ingest: {args.kid} is not registered", file=sys.stderr)
        return 1
    print(f"{args.kid} revoked")
    return 0


def _import(args: argparse.Namespace) -> int:
    """`bulk_import` of a file or stdin: streamed, so a million devices import in flat memory."""
    if args.file == "-":
        stream: IO[str] = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig")
    else:
        stream = open(args.file, encoding="utf-8-sig")  # noqa: SIM115  (closed below)
    try:
        conn = db.connect(args.db)
        try:
            fleet = getattr(args, "fleet_key", None)
            fleet_key = None if fleet is None else registry.parse_public_key(fleet)
            added, present = bulk_import.import_stream(conn, args.table, stream, fleet_key=fleet_key)
        finally:
            conn.close()
    finally:
        if args.file != "-":
            stream.close()
    print(f"{added} {args.table} added, {present} already registered")
    return 0


def _stats(args: argparse.Namespace) -> int:
    conn = db.connect(_existing_db(args))
    print(json.dumps(store.counts(conn), indent=2, sort_keys=True))
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
