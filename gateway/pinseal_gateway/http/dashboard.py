"""The dashboard: server-side HTML pages that poll the JSON API to stay current, plots by uPlot.

Why this stack (docs/gateway.md, "Dashboard"): the page is rendered by the gateway itself from the same
store queries as the API, so it works with nothing but the gateway installed, shows data on first paint
and even without JavaScript; one small script (static/dashboard.js, no build step, no framework) refreshes
the tables and plots every few seconds from `/api/`. uPlot (~50 KB, MIT, no dependencies) draws the
time series. Everything is served by the gateway: no CDN, no request leaves the machine, and the
Content-Security-Policy says so (`default-src 'self'`).

uPlot comes from npm (`package.json`, installed by `make setup`). A wheel carries its two dist files as
package data (setup.py copies them into `static/vendor/` at build time), so `pipx install` gets them too;
from a checkout they are read from `node_modules/uplot/dist/`. Where neither exists the dashboard still
serves every table and says how to get the plots.
"""

from __future__ import annotations

import html
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from pinseal_gateway.http import api
from pinseal_gateway.http.context import CTX_KEY
from pinseal_gateway.http.query import QueryError, parse_kid
from pinseal_gateway.store import devices as device_store
from pinseal_gateway.store import views
from pinseal_gateway.units import format_value

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
UPLOT_FILES = ("uPlot.iife.min.js", "uPlot.min.css")
REPO_NODE_MODULES = Path(__file__).resolve().parents[3] / "node_modules" / "uplot" / "dist"
OWN_FILES = {"dashboard.js": "application/javascript", "dashboard.css": "text/css"}
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; object-src 'none'; "
    "frame-ancestors 'none'"
)
RECENT_ROWS = 20


def uplot_dir() -> Path | None:
    """Where uPlot's dist files are: the wheel's package data first, then the checkout's node_modules."""
    for candidate in (STATIC_DIR / "vendor", REPO_NODE_MODULES):
        if all((candidate / name).is_file() for name in UPLOT_FILES):
            return candidate
    return None


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def when(t: float | None) -> str:
    """A time element the script rewrites as "12 s ago"; UTC ISO 8601 for readers without JavaScript."""
    if t is None:
        return "never"
    return f'<time data-t="{t:.3f}" datetime="{esc(api.iso(t))}">{esc(api.iso(t))}</time>'


def page(title: str, body: str, *, page_kind: str, kid: str = "", plots: bool = False) -> web.Response:
    has_uplot = plots and uplot_dir() is not None
    head_extra = (
        '<link rel="stylesheet" href="/static/vendor/uPlot.min.css">'
        '<script src="/static/vendor/uPlot.iife.min.js"></script>'
        if has_uplot
        else ""
    )
    missing = (
        '<p class="note">Plots need uPlot: run <code>make setup</code> (or <code>npm ci</code>) in the '
        "checkout, or install the gateway from a wheel, which carries it.</p>"
        if plots and not has_uplot
        else ""
    )
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · pinseal gateway</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/dashboard.css">{head_extra}
<script src="/static/dashboard.js" defer></script></head>
<body data-page="{esc(page_kind)}" data-kid="{esc(kid)}">
<header><a href="/" class="brand">pinseal gateway</a> <span id="live" class="live">live</span></header>
<main>{missing}{body}</main>
<footer>Read-only. Data: <a href="/api/devices">/api/devices</a> · <a href="/api/bundles">/api/bundles</a>
· <a href="/api/batches">/api/batches</a> · <a href="/api/rejections">/api/rejections</a>
· <a href="/status">/status</a> · <a href="/metrics">/metrics</a></footer>
</body></html>
"""
    return web.Response(
        text=text, content_type="text/html", charset="utf-8", headers={"Content-Security-Policy": CSP}
    )


def values_cell(device: dict[str, Any]) -> str:
    last = device["last_reading"]
    if not last:
        return "—"
    return esc("  ".join(reading_text(v) for v in last["values"] if v["name"].partition(":")[0] != "bat"))


def reading_text(v: dict[str, Any]) -> str:
    """One record as the table shows it; a second sensor of a quantity (`t:sht3x`) says which it is."""
    sensor = v["name"].partition(":")[2]
    text = format_value(v["raw_unit"], v["raw_value"]) if v["error"] is None else f"{v['name']}: {v['error']}"
    return f"{sensor} {text}" if sensor and v["error"] is None else text


def device_rows(devices: list[dict[str, Any]]) -> str:
    rows = []
    for d in devices:
        battery = "—" if d["battery_v"] is None else f"{d['battery_v']:.2f} V"
        last_time = d["last_reading"]["time"] if d["last_reading"] else None
        rows.append(
            f'<tr data-kid="{esc(d["kid"])}">'
            f'<td><a href="{esc(d["links"]["page"])}">{esc(d["label"] or d["kid"][:12])}</a>'
            f'<br><code class="kid">{esc(d["kid"][:16])}…</code></td>'
            f'<td><span class="status status-{esc(d["status"])}">{esc(d["status"])}</span></td>'
            f'<td class="last-reading">{values_cell(d)}<br><small>{when(last_time)}</small></td>'
            f'<td class="battery">{esc(battery)}</td><td class="readings-count">{d["readings"]}</td>'
            f"<td>{when(d['last_ack'])}</td></tr>"
        )
    return (
        "".join(rows)
        or '<tr><td colspan="6">No devices registered yet: <code>pinseal-gateway devices add</code></td></tr>'
    )


def batch_rows(batches: list[dict[str, Any]]) -> str:
    rows = []
    for b in batches:
        error = f'<br><small class="error">{esc(b["last_error"])}</small>' if b["last_error"] else ""
        rows.append(
            f"<tr><td>{b['batch_no']}</td><td><code>{esc(b['hash'][:16])}…</code></td><td>{b['bundles']}</td>"
            f"<td>{when(b['created_at'])}</td>"
            f'<td><span class="state state-{esc(b["state"])}">{esc(b["state"])}</span>'
            f"{error}</td><td>{b['attempts']}</td></tr>"
        )
    return "".join(rows) or '<tr><td colspan="6">No batches sealed yet.</td></tr>'


def rejection_rows(rejections: dict[str, Any]) -> str:
    counts = dict(rejections["by_reason"])
    for reason, why in rejections["unstored_by_reason"].items():
        counts[reason] = counts.get(reason, 0) + sum(why.values())
    rows = [f"<tr><td>{esc(reason)}</td><td>{n}</td></tr>" for reason, n in sorted(counts.items())]
    return "".join(rows) or '<tr><td colspan="2">None: every message was valid.</td></tr>'


def bundle_rows(bundles: list[dict[str, Any]]) -> str:
    rows = []
    for b in bundles:
        rows.append(
            f"<tr><td>{b['seq']}-{b['last_seq']}</td><td>{b['readings']}</td><td>{when(b['received_at'])}</td>"
            f'<td><span class="state state-{esc(b["state"])}">{esc(b["state"])}</span></td>'
            f'<td><a href="{esc(b["proof"])}"><code>{esc(b["hash"][:16])}…</code></a></td></tr>'
        )
    return "".join(rows) or '<tr><td colspan="5">No bundles yet.</td></tr>'


def broker_text(broker: dict[str, Any]) -> str:
    """The broker line of the overview (the page script writes the same from /api/broker)."""
    where = f"{esc(broker['host'])}:{esc(broker['port'])}"
    if broker["connected"]:
        return f'<span class="status status-online">broker connected</span> {where}'
    why = f" ({broker['last_error']})" if broker.get("last_error") else ""
    return f'<span class="status status-silent">broker not connected</span> {where}{esc(why)}'


def overview_data(conn: Any, config: Any, last_ack: dict[bytes, float], now: float) -> dict[str, Any]:
    return {
        "devices": api.device_list(conn, config, last_ack, now),
        "batches": [api.batch_json(b) for b in views.recent_batches(conn, RECENT_ROWS)],
        "rejections": api.rejections_json(conn, 0),
    }


async def overview(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    data = await ctx.db.run(overview_data, ctx.config, dict(ctx.metrics.last_ack), time.time())
    body = f"""
<p id="broker">{broker_text(ctx.broker_link.as_status())}</p>
<section><h1>Devices</h1>
<table id="devices"><thead><tr><th>device</th><th>status</th><th>last reading</th><th>battery</th>
<th>readings</th><th>last ack</th></tr></thead><tbody>{device_rows(data["devices"])}</tbody></table></section>
<div class="columns">
<section><h2>Batches</h2><p class="hint">Signed Merkle batches and whether the network has accepted them.</p>
<table id="batches"><thead><tr><th>#</th><th>hash</th><th>bundles</th><th>sealed</th><th>state</th>
<th>tries</th></tr></thead><tbody>{batch_rows(data["batches"])}</tbody></table></section>
<section><h2>Rejections</h2><p class="hint">Messages refused, by reason (docs/protocol.md).</p>
<table id="rejections"><thead><tr><th>reason</th><th>count</th></tr></thead>
<tbody>{rejection_rows(data["rejections"])}</tbody></table></section>
</div>"""
    return page("Devices", body, page_kind="overview")


def device_page_data(
    conn: Any, config: Any, last_ack: dict[bytes, float], kid: bytes, now: float
) -> dict[str, Any] | None:
    if device_store.get_device(conn, kid) is None:
        return None
    device = next(d for d in api.device_list(conn, config, last_ack, now) if d["kid"] == kid.hex())
    bundles = [api.bundle_json(b) for b in views.recent_bundles(conn, RECENT_ROWS, kid)]
    return {"device": device, "bundles": bundles}


RANGES = (("15 min", 900), ("1 hour", 3600), ("6 hours", 21600), ("24 hours", 86400), ("7 days", 604800))


async def device_page(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    try:
        kid = parse_kid(request.match_info["kid"])
    except QueryError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    data = await ctx.db.run(device_page_data, ctx.config, dict(ctx.metrics.last_ack), kid, time.time())
    if data is None:
        raise web.HTTPNotFound(text="no such device here: see / for the registered ones")
    d = data["device"]
    options = "".join(
        f'<option value="{seconds}"{" selected" if seconds == 3600 else ""}>{label}</option>'
        for label, seconds in RANGES
    )
    body = f"""
<section><h1>{esc(d["label"] or "device")}
<span class="status status-{esc(d["status"])}">{esc(d["status"])}</span></h1>
<p>Key id <code>{esc(d["kid"])}</code> · expected every {d["expected_interval_s"]} s · {d["bundles"]} bundles,
<span class="readings-count">{d["readings"]}</span> readings, {d["gaps"]} gaps
· last seen {when(d["last_seen"])} · last ack {when(d["last_ack"])}</p>
<table id="devices"><tbody>{device_rows([d])}</tbody></table></section>
<section><h2>Readings</h2>
<label>Range <select id="range">{options}</select></label>
<a id="csv" href="/api/devices/{esc(d["kid"])}/readings?format=csv">CSV</a>
<div id="plots"></div></section>
<section><h2>Bundles and their proofs</h2><p class="hint">Each proof shows the bundle's place in a signed
batch (202 while it waits for one).</p>
<table id="bundles"><thead><tr><th>seq</th><th>readings</th><th>received</th><th>state</th><th>proof</th></tr>
</thead>
<tbody>{bundle_rows(data["bundles"])}</tbody></table></section>"""
    return page(d["label"] or d["kid"], body, page_kind="device", kid=d["kid"], plots=True)


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in OWN_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(
        STATIC_DIR / name, headers={"Content-Type": OWN_FILES[name], "Cache-Control": "no-cache"}
    )


async def vendor_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    folder = uplot_dir()
    if name not in UPLOT_FILES or folder is None:
        raise web.HTTPNotFound()
    kind = "application/javascript" if name.endswith(".js") else "text/css"
    return web.FileResponse(folder / name, headers={"Content-Type": kind, "Cache-Control": "max-age=86400"})


def add_routes(app: web.Application) -> None:
    if uplot_dir() is None:
        log.warning(
            "uPlot not found (no node_modules/uplot, no packaged copy): the dashboard serves no plots"
        )
    app.router.add_get("/", overview)
    app.router.add_get("/devices/{kid}", device_page)
    app.router.add_get("/static/vendor/{name}", vendor_file)
    app.router.add_get("/static/{name}", static_file)
