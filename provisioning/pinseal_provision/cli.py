"""`pinseal-provision`: from a blank board to a registered device, one command per step (or all at once).

A thin layer over the library (as esptool's CLI over esptool.cmds): argument parsing, rich progress bars on
stderr for long steps, JSON or text on stdout, and every `ProvisionError` as two lines (what went wrong, what
to do) with a non-zero exit status instead of a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from pinseal_build.romfs_image import build_image
from pinseal_protocol.cli_parser import SuggestingParser, add_version
from pinseal_provision import (
    batch,
    deploy,
    devconfig,
    enroll,
    flash,
    fleet,
    images,
    masking,
    ports,
    profiles,
    romfs,
    versions,
)
from pinseal_provision.console import deploys
from pinseal_provision.device import Board
from pinseal_provision.errors import BadInput, DeviceError, ProvisionError
from pinseal_provision.progress import Reporter, for_output
from pinseal_provision.registry import Gateway, Ingest

log = logging.getLogger("pinseal_provision")
WIFI_PASSWORD_ENV = "PINSEAL_WIFI_PASSWORD"
err = Console(stderr=True)


def say(text: str) -> None:
    err.print(text, highlight=False, markup=False, soft_wrap=True)


def _reporter(args: argparse.Namespace) -> Reporter:
    """Where this command's steps, progress and result go (progress.py): set once per run by main()."""
    reporter: Reporter = args.reporter
    return reporter


def _board(args: argparse.Namespace, port: str | None = None) -> Board:
    return Board(
        port if port is not None else args.port,
        board_id=getattr(args, "board", None),
        baudrate=args.baud,
        timeout_s=args.timeout,
        interrupt_s=args.interrupt_s,
        reset=args.reset,
    )


def _deploy(args: argparse.Namespace, board: Board, profile: dict[str, Any], show: bool = True) -> str:
    """Deploy, reporting each step (what it checked, built, wrote); returns the summary line."""
    reporter = _reporter(args)
    where = {} if show else {"port": board.port}
    checked = deploy.check_micropython(board, profile, args.ignore_version)
    reporter.step("deploy", "done", checked, **where)
    files = deploy.build(profile, Path(args.firmware), compile_mpy=not args.no_compile)
    how = "compiled with mpy-cross" if not args.no_compile else "taken as .py sources"
    size = sum(len(f.data) for f in files)
    reporter.step("deploy", "done", f"{len(files)} file(s) {how} ({size} bytes)", **where)
    in_romfs = romfs.wanted(profile) and not args.no_romfs
    if in_romfs and romfs.partition_size(board) == 0:
        # The official images have no ROMFS partition: the packages go onto the filesystem instead.
        in_romfs = False
        reporter.step(
            "deploy",
            "info",
            "this MicroPython has no ROMFS partition (the official images have none): "
            "the firmware goes onto the filesystem as files",
            **where,
        )
    note = ""
    if in_romfs:
        # packages into the ROMFS partition (code runs in place); entry points and /board.json as files
        image = build_image(Path(args.firmware))
        wrote = romfs.deploy_image(board, image)
        note = "; ROMFS image " + ("written" if wrote else "unchanged")
        reporter.step(
            "deploy",
            "done",
            f"ROMFS image ({len(image)} bytes) " + ("written" if wrote else "unchanged: the board has it"),
            **where,
        )
        files = [f for f in files if f.dest in ("/main.py", "/boot.py", "/board.json")]
        try:  # package files on the filesystem would be imported before /rom's
            shadows = board.list_files("/pinseal")
        except DeviceError:
            shadows = []
        if shadows:
            board.remove(shadows)
            reporter.step(
                "deploy", "done", f"{len(shadows)} package file(s) removed that would shadow /rom", **where
            )
    if show:
        with reporter.transfer("deploy", f"copy to {board.port}") as update:
            report = deploy.deploy(board, files, lambda dest, done, total: update(done, total))
    else:
        report = deploy.deploy(board, files)
    reporter.step("deploy", "done", report.summary() + ", all verified by the board's SHA-256", **where)
    return report.summary() + note


# -- commands ------------------------------------------------------------------------------------------------
def cmd_ports(args: argparse.Namespace) -> int:
    found = ports.detect()
    for p in found:
        kind = "BOOTLOADER" if p.bootloader else ", ".join(p.boards)
        print(f"{p.device}  {p.vid}:{p.pid}  {kind}  {p.description}")
    if not found:
        say("no board detected by USB id (virtual boards and rfc2217:// ports are named with --port)")
    return 0


def cmd_boards(args: argparse.Namespace) -> int:
    """The board profiles this install knows, so an owner can see which --board names exist and where
    they were found (a checkout's boards/, the installed package, or $PINSEAL_BOARDS_DIR)."""
    found = profiles.all_profiles()
    for board_id, profile in found.items():
        print(f"{board_id}  {profile['mcu']}  MicroPython {profiles.required_micropython(profile)}")
    if not found:
        raise BadInput(
            f"no board profiles in {profiles.BOARDS_DIR}", "set PINSEAL_BOARDS_DIR to a boards/ folder"
        )
    say(f"({len(found)} board profiles in {profiles.BOARDS_DIR})")
    return 0


def cmd_fleet_init(args: argparse.Namespace) -> int:
    key = fleet.create(Path(args.fleet_key))
    print(f"fleet key written to {args.fleet_key} (mode 0600): back it up offline")
    print(f"public key: {key.public_key.hex()}")
    print(f"key id:     {key.key_id.hex()}")
    return 0


def cmd_fleet_show(args: argparse.Namespace) -> int:
    key = fleet.load(Path(args.fleet_key))
    print(f"public key: {key.public_key.hex()}")
    print(f"key id:     {key.key_id.hex()}")
    return 0


def _flash_image(args: argparse.Namespace, profile: dict[str, Any]) -> Path:
    """The image `flash` writes, checked before any port is opened: --image / the positional file, else the
    profile's official image from the cache or downloaded (images.py)."""
    named = {a for a in (args.image, args.image_file) if a}
    if len(named) > 1:
        raise BadInput("two different images given (positional and --image)", "name one image")
    reporter = _reporter(args)
    with reporter.transfer("image", "download") as update:
        return images.image_for_flash(
            profile,
            Path(named.pop()) if named else None,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
            expected_sha256=images.parse_sha256(args.sha256),
            say=lambda text: reporter.step("image", "info", text),
            progress=update,
        )


def cmd_flash(args: argparse.Namespace) -> int:
    reporter = _reporter(args)
    profile = profiles.load_profile(args.board)
    if profile.get("emulator"):
        raise BadInput(
            f"{profile['id']} is an emulated board: it has no flash to write", versions.flash_hint(profile)
        )
    image = _flash_image(args, profile)
    fmt = profile["micropython"].get("format")

    def flash_say(text: str) -> None:
        reporter.step("flash", "info", text)

    if fmt == "bin":
        port = (
            ports.resolve(args.port, args.board) if not (args.port and ports.is_url(args.port)) else args.port
        )
        with reporter.transfer("flash", f"write {image.name} to {port}") as update:
            flash.flash_esp32(
                port,
                image,
                profile,
                baud=args.flash_baud,
                erase=not args.no_erase,
                progress=update,
                say=flash_say,
            )
        done = f"{port}: MicroPython written at 0x{int(profile['micropython']['flash_offset']):x}"
    elif fmt == "uf2":
        volume = Path(args.volume) if args.volume else None
        with reporter.transfer("flash", f"copy {image.name}") as update:
            dest = flash.flash_uf2(
                image, profile, port=args.port, volume=volume, progress=update, say=flash_say
            )
        done = f"{dest}: written; the board reboots into MicroPython"
    else:
        raise BadInput(f"{profile['id']}: unknown image format {fmt!r}")
    reporter.step("flash", "done", done)
    reporter.result(done)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    profile = profiles.load_profile(args.board)
    with _board(args) as board:
        _reporter(args).result(f"{board.port}: {_deploy(args, board, profile)}")
    return 0


def _enroll_options(args: argparse.Namespace, label: str | None = None) -> enroll.EnrollOptions:
    return enroll.EnrollOptions(
        fleet_key=Path(args.fleet_key) if args.fleet_key else None,
        gateway_config=Path(args.gateway_config) if args.gateway_config else None,
        gateway_public_key=args.gateway_public_key,
        label=label if label is not None else args.label,
        interval_s=args.interval,
        wifi_ssid=args.wifi_ssid,
        wifi_password=args.wifi_password,
        mqtt_host=args.mqtt_host,
        mqtt_port=args.mqtt_port,
        mqtt_tls=args.mqtt_tls,
        mqtt_ca=Path(args.mqtt_ca) if args.mqtt_ca else None,
        mqtt_server_hostname=args.mqtt_server_hostname,
        bundle_readings=args.bundle_readings,
        bundle_max_wait_s=args.bundle_max_wait,
        export=Path(args.export) if args.export else None,
        ingest_db=Path(args.ingest_db) if args.ingest_db else None,
        state_dir=Path(args.state_dir),
        force=args.force,
        new_key=getattr(args, "new_key", False),
        self_test=not args.no_self_test,
    )


def cmd_enroll(args: argparse.Namespace) -> int:
    reporter = _reporter(args)
    opts = _enroll_options(args)
    fleet.load(opts.fleet_key)  # before the board is touched
    profile = profiles.load_profile(args.board)
    with _board(args) as board:
        if args.deploy:
            _deploy(args, board, profile)
        report = enroll.enroll(board, opts, say=lambda text: reporter.step("enroll", "done", text))
    reporter.result(report.to_json())
    return 0


@contextlib.contextmanager
def _firmware_paused(args: argparse.Namespace) -> Iterator[Board]:
    """The board with its firmware stopped for the REPL. Afterwards, also when the command failed in
    between (a value the firmware's rules refuse), the firmware is restarted (soft reset) unless --stay,
    and the step says which: a wrong argument must not leave a sensor silent at its prompt."""
    reporter = _reporter(args)
    with _board(args) as board:
        try:
            yield board
        except ProvisionError:
            if not args.stay:
                with contextlib.suppress(ProvisionError):  # the first error is the one to report
                    _restart(reporter, board)
            raise
        if args.stay:
            reporter.step("restart", "info", f"{board.port}: left at the REPL (--stay); reset it to run")
        else:
            _restart(reporter, board)


def _restart(reporter: Reporter, board: Board) -> None:
    board.restart_firmware()
    reporter.step("restart", "done", f"{board.port}: soft reset: the firmware runs again")


def cmd_status(args: argparse.Namespace) -> int:
    fleet_pk = fleet.load(Path(args.fleet_key)).public_key if args.fleet_key else None
    gateway = Gateway(Path(args.gateway_config)) if args.gateway_config else None
    with _firmware_paused(args) as board:
        found = enroll.status(board, fleet_pk, gateway)
    _reporter(args).result(found)
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    with _firmware_paused(args) as board:
        config = enroll.config_show(board)
    _reporter(args).result(config)
    return 0


def cmd_config_set(args: argparse.Namespace) -> int:
    reporter = _reporter(args)
    parsed = [devconfig.parse_assignment(a) for a in args.assignments]  # a typo never stops the firmware
    with _firmware_paused(args) as board:
        config = enroll.config_set(board, parsed)
        reporter.step("config", "done", f"{board.port}: /config.json written and verified")
    if args.stay:
        reporter.step(
            "config", "info", "the firmware reads /config.json at boot: reset the board to apply it"
        )
    reporter.result(masking.masked(config))
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    if args.gateway_config is None:
        raise BadInput("revoke needs --gateway-config")
    gateway = Gateway(Path(args.gateway_config))
    ingest = Ingest(Path(args.ingest_db)) if args.ingest_db else None
    if args.kid:
        done = enroll.revoke(args.kid, gateway, ingest)
    else:
        with _board(args) as board:
            info = enroll.device_info(board)
            if not info.get("key_id"):
                raise BadInput(f"{board.port}: the board has no key to revoke")
            done = enroll.revoke(str(info["key_id"]), gateway, ingest, board if args.wipe else None)
    for line in done:
        print(line)
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    profile = profiles.load_profile(args.board)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = set(steps) - {"deploy", "enroll"}
    if unknown:
        raise BadInput(f"unknown step(s) {', '.join(sorted(unknown))}", "steps are deploy and enroll")
    port_list = list(args.ports or [])
    if args.auto:
        port_list += [p.device for p in ports.detect() if args.board in p.boards]
    if not port_list:
        raise BadInput("no ports", "name them with --ports, or use --auto to take every detected board")
    if "enroll" in steps:
        fleet.load(Path(args.fleet_key) if args.fleet_key else None)
    numbers = {port: n for n, port in enumerate(port_list, 1)}
    if args.labels is not None and len(args.labels) != len(port_list):
        raise BadInput(
            f"{len(args.labels)} labels for {len(port_list)} ports",
            "give --labels one label per port, in order",
        )
    labels = dict(zip(port_list, args.labels, strict=True)) if args.labels else {}

    def job(port: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with _board(args, port) as board:
            if "deploy" in steps:
                out["deploy"] = _deploy(args, board, profile, show=False)
            if "enroll" in steps:
                label = labels.get(port) or (f"{args.label}{numbers[port]:02d}" if args.label else None)
                report = enroll.enroll(
                    board,
                    _enroll_options(args, label),
                    say=lambda text: _reporter(args).step("enroll", "done", text, port=port),
                )
                out["key_id"], out["self_test"] = report.key_id, report.self_test
        return out

    reporter = _reporter(args)
    with reporter.transfer("batch", "boards", unit="boards") as update:
        done = [0]

        def on_done(result: batch.BoardResult) -> None:
            done[0] += 1
            update(done[0], len(port_list))
            state = "ok" if result.ok else f"FAILED: {result.error}"
            status = "done" if result.ok else "failed"
            reporter.step("batch", status, f"{state} ({result.duration_s:.1f} s)", port=result.port)

        results = batch.run_batch(port_list, job, parallel=args.parallel, on_done=on_done)
    report = [r.to_json() for r in results]
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    failed = [r for r in results if not r.ok]
    reporter.result({"ok": len(results) - len(failed), "failed": len(failed), "boards": report})
    for r in failed:
        say(f"{r.port}: {r.error}" + (f"\n  what to do: {r.hint}" if r.hint else ""))
    return 0 if not failed else 1


# -- parser --------------------------------------------------------------------------------------------------
def _board_args(p: argparse.ArgumentParser, board_required: bool = False) -> None:
    p.add_argument("--port", help="serial device, pty, rfc2217://host:port; default: the one detected board")
    p.add_argument(
        "--board",
        default=None if board_required else "esp32_devkitc",
        required=board_required,
        help="board profile id (boards/<id>/board.json) or a path to one",
    )
    p.add_argument("--baud", type=int, default=115200, help="REPL baud rate (USB CDC ignores it)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds without output before a step fails")
    p.add_argument(
        "--interrupt-s",
        type=float,
        default=8.0,
        help="how long to keep sending Ctrl-C to get the REPL (covers the firmware's safe-mode "
        "window if you press reset meanwhile)",
    )
    p.add_argument("--reset", action="store_true", help="reset the board through RTS first (USB-UART ESP32)")
    _output_args(p)


def _output_args(p: argparse.ArgumentParser) -> None:
    """-v and --json after the command too (`pinseal-provision deploy --json`); SUPPRESS keeps a value given
    before the command from being reset by the subcommand's default."""
    p.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show the REPL traffic"
    )
    p.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="JSON lines on stdout (steps, progress, result) for scripts",
    )


def _stay_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stay",
        action="store_true",
        help="leave the board at the REPL afterwards (default: soft reset, the firmware runs again)",
    )


def _deploy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--firmware", default=str(profiles.FIRMWARE_DIR), help="firmware folder (default: firmware/)"
    )
    p.add_argument("--no-compile", action="store_true", help="copy .py sources instead of mpy-cross output")
    p.add_argument("--ignore-version", action="store_true", help="accept another MicroPython release")
    p.add_argument(
        "--no-romfs",
        action="store_true",
        help="copy the packages as .mpy files even where the board has a ROMFS partition (their code then "
        "takes more heap); a board without one (the official images) gets files anyway",
    )


def _enroll_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fleet-key", help="the fleet key file (pinseal-provision fleet init)")
    p.add_argument("--gateway-config", help="the gateway's TOML config (registration goes through its CLI)")
    p.add_argument("--gateway-public-key", help="hex; default: derived from the gateway's key file")
    p.add_argument("--label", help="label in the registries (batch: a prefix, numbered per board)")
    p.add_argument("--interval", type=int, default=60, help="sampling interval, seconds")
    p.add_argument("--wifi-ssid", default="")
    p.add_argument(
        "--wifi-password",
        default=os.environ.get(WIFI_PASSWORD_ENV, ""),
        help=f"default: ${WIFI_PASSWORD_ENV} (keeps it off command lines that ps or make show)",
    )
    p.add_argument("--mqtt-host", default="127.0.0.1", help="the broker as the device reaches it")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--mqtt-tls", action="store_true")
    p.add_argument("--mqtt-ca", help="PEM file of the broker's CA (with --mqtt-tls)")
    p.add_argument("--mqtt-server-hostname", default="")
    p.add_argument("--bundle-readings", type=int, default=16)
    p.add_argument("--bundle-max-wait", type=int, default=900, help="seconds")
    p.add_argument("--export", help="append the device to this JSON file for `pinseal-ingest devices import`")
    p.add_argument("--ingest-db", help="also register with the network ingest (pinseal-ingest --db)")
    p.add_argument(
        "--state-dir",
        default=str(enroll.DEFAULT_STATE_DIR),
        help="journal of registrations not yet on a board (0600 files)",
    )
    p.add_argument("--force", action="store_true", help="enroll an enrolled board again (its key is kept)")
    p.add_argument("--no-self-test", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(prog="pinseal-provision", description=__doc__.splitlines()[0])
    add_version(parser, "pinseal-provision", deploys())
    parser.add_argument("-v", "--verbose", action="store_true", help="show the REPL traffic and debug logs")
    parser.add_argument(
        "--json", action="store_true", help="JSON lines on stdout (steps, progress, result) for scripts"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("ports", help="list boards detected by USB id").set_defaults(fn=cmd_ports)
    sub.add_parser("boards", help="list the board profiles (--board names)").set_defaults(fn=cmd_boards)

    fleet_p = sub.add_parser("fleet", help="the fleet key").add_subparsers(dest="action", required=True)
    init = fleet_p.add_parser("init", help="create the fleet key (0600; never overwrites)")
    init.add_argument("--fleet-key", required=True)
    init.set_defaults(fn=cmd_fleet_init)
    show = fleet_p.add_parser("show", help="print the fleet public key and key id")
    show.add_argument("--fleet-key", required=True)
    show.set_defaults(fn=cmd_fleet_show)

    p = sub.add_parser("flash", help="write MicroPython (esptool for ESP32, UF2 copy for Pico)")
    _board_args(p, board_required=True)
    p.add_argument("image", nargs="?", help="a local MicroPython .bin/.uf2 (same as --image)")
    p.add_argument(
        "--image", dest="image_file", help="a local image; default: the profile's official one, downloaded"
    )
    p.add_argument("--sha256", help="enforce this SHA-256 of the image (64 hex digits)")
    p.add_argument(
        "--cache-dir",
        help="downloaded images (default: $PINSEAL_IMAGE_CACHE, else $XDG_CACHE_HOME/pinseal/images)",
    )
    p.add_argument("--flash-baud", type=int, default=460800)
    p.add_argument("--no-erase", action="store_true")
    p.add_argument("--volume", help="the mounted RPI-RP2/RP2350 drive (default: found in /proc/mounts)")
    p.set_defaults(fn=cmd_flash)

    p = sub.add_parser("deploy", help="copy the compiled firmware (only files that differ) and /board.json")
    _board_args(p)
    _deploy_args(p)
    p.set_defaults(fn=cmd_deploy)

    p = sub.add_parser("enroll", help="device key, certificate, config, registration, self-test")
    _board_args(p)
    _enroll_args(p)
    _deploy_args(p)
    p.add_argument("--deploy", action="store_true", help="deploy the firmware first")
    p.add_argument(
        "--new-key",
        action="store_true",
        help="with --force: the device makes a new key (a new identity: the old key's unsent readings go)",
    )
    p.set_defaults(fn=cmd_enroll)

    p = sub.add_parser("status", help="firmware, files, certificate, config and registry state (JSON)")
    _board_args(p)
    p.add_argument("--fleet-key", help="verify the certificate with this fleet key")
    p.add_argument("--gateway-config", help="also show the registry state")
    _stay_arg(p)
    p.set_defaults(fn=cmd_status)

    config = sub.add_parser("config", help="the board's /config.json").add_subparsers(
        dest="action", required=True
    )
    p = config.add_parser("set", help="set SECTION.KEY=VALUE (checked with the firmware's rules)")
    _board_args(p)
    p.add_argument("assignments", nargs="+", metavar="SECTION.KEY=VALUE")
    _stay_arg(p)
    p.set_defaults(fn=cmd_config_set)
    p = config.add_parser("show", help="print /config.json (secrets masked)")
    _board_args(p)
    _stay_arg(p)
    p.set_defaults(fn=cmd_config_show)

    p = sub.add_parser("revoke", help="revoke a device at the gateway (and network ingest)")
    _board_args(p)
    p.add_argument("--kid", help="key id hex (default: read from the board at --port)")
    p.add_argument("--gateway-config")
    p.add_argument("--ingest-db")
    p.add_argument("--wipe", action="store_true", help="also remove certificate and config from the board")
    p.set_defaults(fn=cmd_revoke)

    p = sub.add_parser(
        "batch", help="deploy and enroll many boards; one failing board does not stop the rest"
    )
    _board_args(p)
    _enroll_args(p)
    _deploy_args(p)
    p.add_argument("--ports", nargs="+", help="the boards' ports")
    p.add_argument(
        "--labels", nargs="+", help="one label per port, in --ports order (instead of a numbered --label)"
    )
    p.add_argument("--auto", action="store_true", help="every detected board of --board")
    p.add_argument("--parallel", type=int, default=1, help="boards at once (one thread each)")
    p.add_argument("--steps", default="deploy,enroll")
    p.add_argument("--report", help="write the per-board report (JSON) here")
    p.set_defaults(fn=cmd_batch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    args.reporter = for_output(args.json, err)
    try:
        return int(args.fn(args))
    except ProvisionError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        if exc.hint:
            err.print(f"  what to do: {exc.hint}", highlight=False, markup=False, soft_wrap=True)
        if args.verbose and getattr(exc, "device_traceback", ""):
            err.print(exc.device_traceback, highlight=False, markup=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted: run the same command again to continue where it stopped", soft_wrap=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
