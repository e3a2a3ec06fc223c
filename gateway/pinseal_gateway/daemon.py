"""`pinseal-gateway run`: everything wired together under one asyncio loop.

Startup order puts durability first: database (schema, state) and key before any connection, the
pipeline before the MQTT subscription. Shutdown runs the other way round: stop taking messages,
finish and commit the group in flight, publish its acks and PUBACKs, disconnect, close the database.
Whatever was received but not committed is simply not PUBACKed; the broker redelivers it next run.

Every long-lived task is watched: one that dies stops the gateway with a critical log line, and
`run_gateway` then raises `GatewayFailed`, so `pinseal-gateway run` exits non-zero and a supervisor
(systemd `Restart=on-failure`) restarts it. A stop asked for (SIGTERM) returns normally, within
`SHUTDOWN_GRACE_S` however busy or stuck the tasks are.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinseal_gateway import anchoring, batcher, reload, silence, uplink
from pinseal_gateway.broker_link import BrokerLink
from pinseal_gateway.config import GatewayConfig
from pinseal_gateway.context import GatewayContext
from pinseal_gateway.homeassistant.run import run_homeassistant
from pinseal_gateway.http.auth import read_password_file
from pinseal_gateway.http.server import start_http
from pinseal_gateway.intake.mqtt import MqttIngest
from pinseal_gateway.intake.serial import SerialIngest
from pinseal_gateway.keys import KeyFileError, gateway_kid, load_gateway_key, read_secret
from pinseal_gateway.metrics import Metrics
from pinseal_gateway.pipeline import Pipeline
from pinseal_gateway.store import bundles as bundle_store
from pinseal_gateway.store.db import Database

if TYPE_CHECKING:
    from pinseal_gateway.intake.ble.intake import BleIntake

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10.0
"""From the stop request to the last task cancelled: the whole shutdown, not each step of it."""


class GatewayFailed(RuntimeError):
    """A long-lived task died: the gateway stopped because it could no longer do its job."""


def _background_tasks(
    config: GatewayConfig,
) -> dict[str, Callable[[GatewayContext, asyncio.Event], Awaitable[Any]]]:
    """What runs beside the pipeline for the gateway's whole life, each `fn(ctx, stop)`, each watched.

    Looked up when the gateway starts (not at import), so a test can swap one for a failing one.
    """
    tasks: dict[str, Callable[[GatewayContext, asyncio.Event], Awaitable[Any]]] = {
        "run_batcher": batcher.run_batcher,
        "run_uplink": uplink.run_uplink,
        "run_silence_watch": silence.run_silence_watch,
    }
    if config.homeassistant.enabled:
        tasks["run_homeassistant"] = run_homeassistant
    if config.anchor.enabled:
        tasks["run_anchoring"] = anchoring.run_anchoring
    return tasks


def _read_mqtt_password(config: GatewayConfig) -> str | None:
    path = config.mqtt_password_path
    if not path.exists():
        log.warning(
            "no MQTT password file at %s (mqtt.password_file); connecting without a password, which a "
            "pinseal broker refuses: `pinseal-gateway broker-config --config <gateway.toml> --out <dir>` "
            "writes it with the broker's password file and ACL (then restart the broker)",
            path,
        )
        return None
    return read_secret(path).decode("utf-8").strip()


def _ble_intake(config: GatewayConfig, pipeline: Pipeline, ctx: GatewayContext) -> BleIntake | None:
    """The BLE intake when `[ble] enabled` (bleak is imported only then: a gateway without BLE needs no
    D-Bus); it shares the pipeline, and so the registry, with the MQTT intake."""
    if not config.ble.enabled:
        return None
    from pinseal_gateway.intake.ble.intake import BleIntake

    log.info("BLE intake on %s (max %d connections)", config.ble.adapter, config.ble.max_connections)
    return BleIntake(config.ble, pipeline, pipeline.registry, ctx.metrics)


def _init_gauges(ctx: GatewayContext) -> None:
    for state in ctx.db.run_sync(bundle_store.all_states):
        if state.last_seen is not None:
            ctx.metrics.device_last_seen.labels(state.kid.hex()).set(state.last_seen)


async def run_gateway(
    config: GatewayConfig,
    stop: asyncio.Event | None = None,
    *,
    on_ready: Callable[[GatewayContext, int], None] | None = None,
    config_path: Path | None = None,
    log_level_fixed: bool = False,
) -> None:
    """Run the gateway until `stop` is set (or SIGTERM/SIGINT); `on_ready(ctx, http_port)` once subscribed.

    With `config_path`, SIGHUP reloads it (`reload.py`); `log_level_fixed`: `--log-level` was given.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)

    key = load_gateway_key(config.key_path)  # KeyFileError: refuse to start with an unsafe key
    if config.anchor.enabled:
        anchoring.settings(config)  # ConfigError now, not in a background task later
    password = _read_mqtt_password(config)
    if config.http_password_path is not None:
        read_password_file(config.http_password_path)  # PasswordFileError: refuse an unusable password file
    db = Database(config.db_path)
    ctx = GatewayContext(config, db, key, gateway_kid(key), Metrics())
    if config_path is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, _reload, ctx, config_path, log_level_fixed)
    _init_gauges(ctx)
    log.info("gateway %s starting; database %s", ctx.gateway_kid.hex(), config.db_path)

    pipeline = Pipeline(ctx)
    ctx.broker_link = BrokerLink(config.mqtt.host, config.mqtt.port)
    ingest = MqttIngest(config.mqtt, password, pipeline, ctx.metrics, ctx.broker_link)
    serial_ingest = SerialIngest(config.serial, pipeline, ctx.metrics)
    ble = _ble_intake(config, pipeline, ctx)
    runner, http_port = await start_http(ctx)
    tasks: dict[asyncio.Task[Any], str] = {}
    failed: list[str] = []
    pipeline_task: asyncio.Task[None] | None = None
    try:
        pipeline_task = asyncio.create_task(pipeline.run(stop), name="pipeline")
        tasks[pipeline_task] = "pipeline"
        ingest.start()
        if ingest.task is not None:
            tasks[ingest.task] = "mqtt-ingest"
        if serial_ingest.enabled:
            serial_ingest.start()
            if serial_ingest.task is not None:
                tasks[serial_ingest.task] = "serial-usb-scan"
        if ble is not None:
            ble.start()
            if ble.task is not None:
                tasks[ble.task] = "ble-intake"
        for name, fn in _background_tasks(config).items():
            tasks[asyncio.create_task(fn(ctx, stop), name=name)] = name
        for task, name in tasks.items():
            task.add_done_callback(lambda t, n=name: _task_done(t, n, stop, failed))
        if on_ready is not None:
            await asyncio.get_running_loop().run_in_executor(None, ingest.connected.wait, 30.0)
            on_ready(ctx, http_port)
        _settle_gc()
        log.info("gateway running")
        await stop.wait()
        log.info("gateway stopping")
    finally:
        stop.set()
        deadline = loop.time() + SHUTDOWN_GRACE_S
        ingest.pause()
        if ble is not None:
            ble.pause()
        if pipeline_task is not None:
            await _finish_within([pipeline_task], deadline, loop)
        await ingest.stop()
        await serial_ingest.stop()
        if ble is not None:
            await ble.stop()
        await _finish_within([t for t in tasks if t is not pipeline_task], deadline, loop)
        await runner.cleanup()
        db.close()
        log.info("gateway stopped")
    if failed:
        raise GatewayFailed(f"{', '.join(failed)} failed (see the log above)")


async def _finish_within(
    tasks: list[asyncio.Task[Any]], deadline: float, loop: asyncio.AbstractEventLoop
) -> None:
    """Let `tasks` finish until `deadline`, then cancel the rest: a stop never waits on a stuck task."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
    for task in pending:
        log.warning("%s did not finish within the shutdown grace period; cancelling it", task.get_name())
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _reload(ctx: GatewayContext, path: Path, log_level_fixed: bool) -> None:
    """SIGHUP, on the event loop: every task reads `ctx.config` afresh, so replacing it is the reload."""
    log.info("SIGHUP: reloading %s", path)
    try:
        ctx.config = reload.reload_config(path, ctx.config, log_level_fixed=log_level_fixed)
    except Exception:  # a reload must never take the gateway down
        log.exception("config reload failed; keeping the running configuration")


def _settle_gc() -> None:
    """Keep what startup built (config, registry, key objects, metrics) out of every cyclic-GC pass.

    Nearly everything the gateway allocates per bundle is acyclic and freed by reference counting, yet
    each container allocation counts toward a collection that rescans the young objects in flight; the
    collector showed as 5% of the gateway's active samples under `make bench-gateway` (py-spy --native).
    """
    gc.collect()
    gc.freeze()


def _task_done(task: asyncio.Task[Any], name: str, stop: asyncio.Event, failed: list[str]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.critical("%s failed; stopping the gateway", name, exc_info=exc)
        failed.append(name)
        stop.set()
    elif not stop.is_set():
        log.info("%s finished (nothing more to do in this configuration)", name)


__all__ = ["GatewayFailed", "KeyFileError", "run_gateway"]
