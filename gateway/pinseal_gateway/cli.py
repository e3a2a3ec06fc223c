"""`pinseal-gateway`: run the daemon and administer its key, devices and broker configuration.

Every subcommand takes `--config FILE`; without it the file is `$PINSEAL_GATEWAY_CONFIG`, else
`/etc/pinseal/gateway.toml` (`config_lookup`), and `init` writes one. Administrative commands work on the
database directly (WAL lets them run while the daemon does; the daemon notices registry changes within a
second); the read-only ones never create it. Errors a user can fix end with exit status 1 and one line
on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pinseal_gateway import broker, config_lookup, initialize, logformat, proofs
from pinseal_gateway.config import LOG_LEVELS, ConfigError, GatewayConfig, load_config
from pinseal_gateway.config_lookup import CONFIG_ENV, find_config
from pinseal_gateway.keys import (
    KeyFileError,
    create_gateway_key,
    load_gateway_key,
    read_secret,
    write_secret,
)
from pinseal_gateway.store import devices as device_store
from pinseal_gateway.store.db import Database
from pinseal_protocol import keys as pkeys
from pinseal_protocol import labels
from pinseal_protocol.cli_parser import SuggestingParser, add_version

log = logging.getLogger("pinseal_gateway")

PENDING_EXIT = 3  # `proof`: the bundle is stored but not in a batch yet (try again later)
FAILED_EXIT = 2  # `run`: a task died and stopped the gateway (the log says which); a supervisor restarts it


class CliError(Exception):
    """A failure to report as one line and exit status 1."""


def _config(args: argparse.Namespace) -> GatewayConfig:
    """The configuration `find_config` finds (remembered in `args.config_path` for messages)."""
    found = find_config(args.config)
    args.config_path = found.path.absolute()
    return load_config(args.config_path)


def _open_db(config: GatewayConfig) -> Database:
    """The database, created if missing: for the commands that write (run, devices add, broker-config)."""
    return Database(config.db_path)


def _open_existing_db(config: GatewayConfig, args: argparse.Namespace) -> Database:
    """The database of a gateway that exists, for the commands that only read or change what is there.

    Opening a missing path would create an empty database there, and the command would then report a
    gateway without devices instead of a wrong data_dir.
    """
    if not config.db_path.is_file():
        raise CliError(
            f"no gateway database at {config.db_path} (data_dir of {args.config_path}): check [gateway] "
            f"data_dir, or set this gateway up with `pinseal-gateway init` and "
            f"`run --config {args.config_path}`"
        )
    return Database(config.db_path)


def _registered_devices(config: GatewayConfig, args: argparse.Namespace) -> list[device_store.Device]:
    """The registry, read without creating it. A gateway whose key exists but whose database does not yet
    (made with `keygen`, nothing registered or run since) has no devices, which is what it says; without
    the key too, the data folder is not a gateway's: an error naming where it looked."""
    if not config.db_path.is_file() and config.key_path.is_file():
        print(
            f"pinseal-gateway: no devices registered yet (no database at {config.db_path})",
            file=sys.stderr,
        )
        return []
    db = _open_existing_db(config, args)
    try:
        return db.run_sync(device_store.list_devices)
    finally:
        db.close()


def cmd_run(args: argparse.Namespace) -> int:
    from pinseal_gateway.daemon import GatewayFailed, run_gateway

    config = _config(args)
    if args.log_level is None:
        logging.getLogger().setLevel(config.gateway.log_level)
    try:
        asyncio.run(
            run_gateway(config, config_path=args.config_path, log_level_fixed=args.log_level is not None)
        )
    except GatewayFailed as exc:
        log.critical("gateway stopped on a failure: %s", exc)
        return FAILED_EXIT
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    config = _config(args)
    key = create_gateway_key(config.key_path)
    public = pkeys.public_key_bytes(key)
    print(f"gateway key written to {config.key_path} (mode 0600)")
    print(f"public key: {public.hex()}")
    print(f"key id:     {pkeys.key_id_hex(public)}")
    return 0


def cmd_anchor_keygen(args: argparse.Namespace) -> int:
    """The key this gateway anchors with ([anchor]), made here, 0600; its address is what to fund."""
    config = _config(args)
    try:
        from pinseal_anchor.keyfile import generate_key
    except ImportError:
        print("pinseal-gateway: anchoring needs: pip install 'pinseal[gateway,anchor]'", file=sys.stderr)
        return 2
    path = config.data_dir / config.anchor.key_file
    try:
        address = generate_key(path)
    except ValueError as exc:  # there already: never overwritten (its address is funded)
        print(f"pinseal-gateway: {exc}", file=sys.stderr)
        return 1
    print(f"anchoring key written to {path} (mode 0600)")
    print(f"address: {address} (fund it with the chain's currency for the anchoring transactions)")
    return 0


def cmd_pubkey(args: argparse.Namespace) -> int:
    """The gateway's public key, for tools that need it (provisioning writes it to each board).

    They ask this command rather than open the key file themselves: only the gateway reads its
    private key, and its checks (file mode, format) apply to every reader.
    """
    public = pkeys.public_key_bytes(load_gateway_key(_config(args).key_path))
    if args.json:
        print(json.dumps({"kid": pkeys.key_id_hex(public), "public_key": public.hex()}))
    else:
        print(public.hex())
    return 0


def cmd_devices_add(args: argparse.Namespace) -> int:
    config = _config(args)
    try:
        public = bytes.fromhex(args.public_key)
    except ValueError as exc:
        raise CliError(f"not a 32-byte Ed25519 public key in hex: {args.public_key!r}") from exc
    try:
        pkeys.check_public_key(public)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if args.interval is not None and args.interval <= 0:
        raise CliError("--interval must be positive")
    if args.label is not None:
        try:
            labels.check_label(args.label)
        except ValueError as exc:
            raise CliError(f"--label: {exc}") from exc
    password = device_store.new_mqtt_password()
    db = _open_db(config)
    try:
        device = db.run_sync(
            lambda conn: device_store.add_device(
                conn,
                public,
                label=args.label,
                expected_interval_s=args.interval,
                password_hash=device_store.mosquitto_password_hash(password),
            )
        )
    finally:
        db.close()
    print(f"device {device.kid_hex} registered")
    print(f"mqtt username: {device.kid_hex}")
    print(f"mqtt password: {password}")
    print("(shown once; only its hash is stored. Regenerate the broker files: pinseal-gateway broker-config)")
    return 0


def cmd_devices_list(args: argparse.Namespace) -> int:
    devices = _registered_devices(_config(args), args)
    if args.json:
        rows = [
            {
                **row,
                "state": "revoked" if d.revoked else "active",
                "expected_interval_s": d.expected_interval_s,
            }
            for row, d in zip(export_devices(devices), devices, strict=True)
        ]
        print(json.dumps(rows, indent=2))
        return 0
    for d in devices:
        state = "revoked" if d.revoked else "active"
        interval = d.expected_interval_s if d.expected_interval_s is not None else "-"
        label = labels.escape_label(d.label or "")
        print(f"{d.kid_hex}  {state:7}  interval={interval}  {label}".rstrip())
    return 0


def cmd_devices_revoke(args: argparse.Namespace) -> int:
    try:
        kid = pkeys.parse_key_id_hex(args.kid)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    config = _config(args)
    db = _open_existing_db(config, args)
    try:
        db.run_sync(device_store.revoke_device, kid)
    finally:
        db.close()
    print(f"device {args.kid} revoked")
    return 0


def export_devices(devices: Sequence[device_store.Device]) -> list[dict[str, object]]:
    """The registry as the network ingest's `devices import` reads it."""
    return [
        {
            "kid": d.kid_hex,
            "public_key": d.public_key.hex(),
            "label": d.label,
            "added_at": d.added_at,
            "revoked_at": d.revoked_at,
        }
        for d in devices
    ]


def cmd_devices_export(args: argparse.Namespace) -> int:
    devices = _registered_devices(_config(args), args)
    print(json.dumps(export_devices(devices), indent=2))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pinseal_gateway.http.status import build_status

    config = _config(args)
    db = _open_existing_db(config, args)
    try:
        status = db.run_sync(build_status, config)
    finally:
        db.close()
    print(json.dumps(status, indent=2))
    return 0


def cmd_proof(args: argparse.Namespace) -> int:
    try:
        bundle_hash = bytes.fromhex(args.bundle_hash)
    except ValueError:
        bundle_hash = b""
    if len(bundle_hash) != 32:
        raise CliError("a bundle hash is 64 hex digits")
    config = _config(args)
    db = _open_existing_db(config, args)
    try:
        proof = db.run_sync(proofs.proof_for, bundle_hash)
    finally:
        db.close()
    if proof is None:
        raise CliError(f"no proof for {args.bundle_hash}: unknown bundle")
    print(json.dumps(proof, indent=2))
    if proofs.is_pending(proof):
        print("stored, not batched yet: no proof until the next batch is sealed", file=sys.stderr)
        return PENDING_EXIT
    return 0


def gateway_mqtt_password(config: GatewayConfig) -> str:
    """The gateway's own MQTT password: read from its 0600 file, created on first use."""
    path = config.mqtt_password_path
    if not path.exists():
        write_secret(path, device_store.new_mqtt_password().encode())
    return read_secret(path).decode("utf-8").strip()


def write_broker_files(config: GatewayConfig, out: Path, *, system: bool) -> tuple[dict[str, Path], int]:
    """The broker's conf, password file and ACL for the gateway and every active device; (paths, devices)."""
    password = gateway_mqtt_password(config)
    db = _open_db(config)
    try:
        devices = db.run_sync(device_store.list_devices)
    finally:
        db.close()
    users = [broker.gateway_user(config.mqtt.username, device_store.mosquitto_password_hash(password))]
    device_users = [
        broker.BrokerUser(d.kid_hex, d.mqtt_password_hash)
        for d in devices
        if not d.revoked and d.mqtt_password_hash is not None
    ]
    ha_users = homeassistant_users(config)
    paths = broker.write_broker_config(
        out,
        host=config.mqtt.host,
        port=config.mqtt.port,
        users=users + ha_users + device_users,
        system=system,
    )
    return paths, len(device_users)


def print_homeassistant_login(config: GatewayConfig) -> None:
    """Where Home Assistant's broker login is, when broker-config made one (discovery on the own broker)."""
    ha = config.homeassistant
    if ha.enabled and ha.broker == "pinseal":
        print(
            f"Home Assistant: MQTT user {ha.ha_username} on {config.mqtt.host}:{config.mqtt.port}, "
            f"password in {config.ha_user_password_path} (enter both in Home Assistant's MQTT integration)"
        )


def cmd_broker_config(args: argparse.Namespace) -> int:
    config = _config(args)
    paths, n_devices = write_broker_files(config, Path(args.out), system=args.system)
    for name, path in paths.items():
        print(f"{name}: {path}")
    print(f"{n_devices} device(s) and the gateway user {config.mqtt.username}")
    print_homeassistant_login(config)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """A new gateway: the commented configuration, the key (0600), the broker files, then what to do next."""
    config_path = Path(args.config or os.environ.get(CONFIG_ENV) or config_lookup.SYSTEM_CONFIG).absolute()
    data_dir = Path(args.data_dir).absolute()
    broker_out = Path(args.broker_out).absolute() if args.broker_out else config_path.parent / "mosquitto"
    settings: dict[str, object] = {"gateway.data_dir": str(data_dir)}
    for key, value in (
        ("mqtt.host", args.mqtt_host),
        ("mqtt.port", args.mqtt_port),
        ("http.listen", args.http_listen),
    ):
        if value is not None:
            settings[key] = value
    try:
        initialize.check_targets(config_path, data_dir, GatewayConfig().gateway.key_file, force=args.force)
        owner = initialize.owner_ids(args.owner)
        config = initialize.write_config(config_path, settings)
        public, created = initialize.make_key(config)
        paths, _ = write_broker_files(config, broker_out, system=args.system_broker)
        initialize.hand_over(config.data_dir, owner)
    except initialize.InitError as exc:
        raise CliError(str(exc)) from exc
    except PermissionError as exc:
        raise CliError(
            f"cannot write {exc.filename}: permission denied. For the system-wide gateway run it as root "
            "(sudo pinseal-gateway init ... --owner pinseal); for your own, pass --config and --data-dir "
            "in folders you own"
        ) from exc
    print(f"configuration: {config_path} (commented; every key shows its default)")
    state = "created, mode 0600" if created else "kept the existing one"
    print(f"gateway key:   {config.key_path} ({state})")
    print(f"  public key {public.hex()}, key id {pkeys.key_id_hex(public)}")
    print(f"broker files:  {', '.join(str(p) for p in paths.values())}")
    print_homeassistant_login(config)
    print()
    print(
        next_steps(
            config_path, broker_out, system=args.system_broker, http=config.http.listen, owner=args.owner
        )
    )
    return 0


REGEN_DIR = Path("/tmp/pinseal-broker")
"""Where the service user regenerates the broker files after `init --owner` (root installs them)."""


def next_steps(
    config_path: Path, broker_out: Path, *, system: bool, http: str, owner: str | None = None
) -> str:
    """What an owner does after `init`, with this gateway's paths filled in: `--config` only where the
    lookup would not find the file by itself, and the administrative commands run as the service user
    (`owner`), so the files they create in the data folder stay its own."""
    cfg = "" if config_path == config_lookup.SYSTEM_CONFIG else f" --config {config_path}"
    admin = f"sudo -u {owner} pinseal-gateway" if owner else "pinseal-gateway"
    if system:
        broker_step = (
            "1. install the broker files into the distribution's Mosquitto:\n"
            f"     sudo install -m 0644 {broker_out}/{broker.CONF_NAME} /etc/mosquitto/conf.d/pinseal.conf\n"
            f"     sudo install -m 0640 -o root -g mosquitto {broker_out}/{broker.PASSWD_NAME} "
            f"/etc/mosquitto/{broker.PASSWD_NAME}\n"
            f"     sudo install -m 0644 {broker_out}/{broker.ACL_NAME} /etc/mosquitto/{broker.ACL_NAME}\n"
            "     sudo systemctl restart mosquitto"
        )
        # Regenerated by whoever owns the data folder (broker-config may create password files there),
        # into a folder that user can write; root installs from it.
        out = REGEN_DIR if owner else broker_out
        regen = (
            f"{'sudo ' if not owner else ''}{admin} broker-config --system --out {out}{cfg}, install its "
            "passwd and acl files as in step 1, sudo systemctl reload mosquitto"
        )
        start = "sudo systemctl enable --now pinseal-gateway   (the unit: packaging/systemd/)"
    else:
        broker_step = f"1. start the broker:  mosquitto -c {broker_out}/{broker.CONF_NAME}"
        regen = f"{admin} broker-config --out {broker_out}{cfg}, then reload the broker (SIGHUP)"
        start = f"{admin} run{cfg}"
    return "\n".join(
        [
            "next steps:",
            f"  {broker_step}",
            f"  2. start the gateway:  {start}",
            "  3. register each device:",
            f"       {admin} devices add PUBKEY-HEX --label NAME --interval S{cfg}",
            f"     then regenerate the broker's password file:  {regen}",
            f"  4. check it:  {admin} status{cfg}   or   curl http://{http}/status",
        ]
    )


def homeassistant_users(config: GatewayConfig) -> list[broker.BrokerUser]:
    """With Home Assistant discovery on the gateway's own broker: the publisher's login and Home
    Assistant's, passwords created (0600, in the data folder) on first use."""
    ha = config.homeassistant
    if not ha.enabled or ha.broker != "pinseal":
        return []
    publisher = _secret_password(config.ha_publisher_password_path)
    reader = _secret_password(config.ha_user_password_path)
    return [
        broker.ha_publisher_user(
            ha.username, device_store.mosquitto_password_hash(publisher), ha.discovery_prefix, ha.state_prefix
        ),
        broker.homeassistant_user(
            ha.ha_username, device_store.mosquitto_password_hash(reader), ha.discovery_prefix, ha.state_prefix
        ),
    ]


def _secret_password(path: Path) -> str:
    if not path.exists():
        write_secret(path, device_store.new_mqtt_password().encode())
    return read_secret(path).decode("utf-8").strip()


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        help=f"TOML configuration (default: ${CONFIG_ENV}, else {config_lookup.SYSTEM_CONFIG})",
    )
    common.add_argument(
        "--log-level",
        choices=list(LOG_LEVELS),
        help="default: [gateway] log_level of the configuration, INFO",
    )
    common.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="json: one object a line, for collectors",
    )
    parser = SuggestingParser(prog="pinseal-gateway", description=__doc__.splitlines()[0])
    add_version(parser, "pinseal-gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    init = sub.add_parser(
        "init",
        parents=[common],
        help="set up a new gateway: commented configuration, key (0600), broker files, next steps",
    )
    init.add_argument(
        "--data-dir", default=str(GatewayConfig().data_dir), metavar="DIR", help="default: %(default)s"
    )
    init.add_argument("--mqtt-host", metavar="HOST", help="the broker's listener (default 127.0.0.1)")
    init.add_argument("--mqtt-port", type=int, metavar="PORT", help="default 1883")
    init.add_argument("--http-listen", metavar="HOST:PORT", help="the HTTP API (default 127.0.0.1:9100)")
    init.add_argument(
        "--broker-out", metavar="DIR", help="broker files (default: mosquitto/ beside the config)"
    )
    init.add_argument(
        "--system-broker",
        action="store_true",
        help="broker files for the distribution's Mosquitto (installed into /etc/mosquitto)",
    )
    init.add_argument("--owner", metavar="USER", help="hand the data folder to this service user (as root)")
    init.add_argument(
        "--force", action="store_true", help="rewrite an existing configuration (an existing key is kept)"
    )
    init.set_defaults(fn=cmd_init)
    sub.add_parser("run", parents=[common], help="run the gateway daemon").set_defaults(fn=cmd_run)
    sub.add_parser("keygen", parents=[common], help="create the gateway key (0600)").set_defaults(
        fn=cmd_keygen
    )

    sub.add_parser(
        "anchor-keygen", parents=[common], help="create the key this gateway anchors with ([anchor], 0600)"
    ).set_defaults(fn=cmd_anchor_keygen)

    pubkey = sub.add_parser("pubkey", parents=[common], help="print the gateway's public key (hex)")
    pubkey.add_argument("--json", action="store_true", help='{"kid": HEX, "public_key": HEX}')
    pubkey.set_defaults(fn=cmd_pubkey)

    devices = sub.add_parser("devices", help="the device registry").add_subparsers(
        dest="action", required=True
    )
    add = devices.add_parser("add", parents=[common], help="register a device public key")
    add.add_argument("public_key", metavar="PUBKEY-HEX")
    add.add_argument("--label")
    add.add_argument("--interval", type=int, metavar="S", help="expected reporting interval in seconds")
    add.set_defaults(fn=cmd_devices_add)
    listing = devices.add_parser("list", parents=[common], help="registered devices (--json for scripts)")
    listing.add_argument("--json", action="store_true", help="a JSON array instead of lines")
    listing.set_defaults(fn=cmd_devices_list)
    revoke = devices.add_parser("revoke", parents=[common])
    revoke.add_argument("kid", metavar="KID-HEX")
    revoke.set_defaults(fn=cmd_devices_revoke)
    devices.add_parser(
        "export", parents=[common], help="JSON for pinseal-ingest devices import"
    ).set_defaults(fn=cmd_devices_export)

    sub.add_parser("status", parents=[common], help="devices, counts, outbox (JSON)").set_defaults(
        fn=cmd_status
    )
    proof = sub.add_parser("proof", parents=[common], help="inclusion proof for a bundle (JSON)")
    proof.add_argument("bundle_hash", metavar="BUNDLE-HASH-HEX")
    proof.set_defaults(fn=cmd_proof)
    bc = sub.add_parser("broker-config", parents=[common], help="write mosquitto.conf, password file and ACL")
    bc.add_argument("--out", required=True, metavar="DIR")
    bc.add_argument(
        "--system",
        action="store_true",
        help="for the distribution's Mosquitto (files installed in /etc/mosquitto)",
    )
    bc.set_defaults(fn=cmd_broker_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logformat.configure(args.log_level or "INFO", args.log_format)
    try:
        return int(args.fn(args))
    except (CliError, ConfigError, KeyFileError, device_store.DeviceError) as exc:
        print(f"pinseal-gateway: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
