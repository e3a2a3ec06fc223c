// pinseal gateway dashboard: keeps the server-rendered page current by polling the read-only JSON API.
// No framework and no build step; every value goes into the page through textContent, never as HTML.
"use strict";

const POLL_MS = 3000;
const DECIMALS = { "°C": 1, "%RH": 0, hPa: 1, V: 2 };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function fmt(v) {
  if (v.error !== null) return `${v.name}: ${v.error}`;
  if (v.value === null) return `${v.name}: ?`;
  const d = DECIMALS[v.unit] ?? 3;
  const sensor = v.name.split(":")[1]; // a second sensor of the same quantity, e.g. t:sht3x
  return `${sensor ? sensor + " " : ""}${v.value.toFixed(d)} ${v.unit}`;
}

function timeEl(t) {
  if (t === null || t === undefined) return document.createTextNode("never");
  const iso = new Date(t * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  const node = el("time", { "data-t": String(t), datetime: iso }, iso);
  return node;
}

function ago(t) {
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return new Date(t * 1000).toLocaleString();
}

function refreshTimes() {
  for (const node of document.querySelectorAll("time[data-t]")) {
    node.textContent = ago(Number(node.dataset.t));
    node.title = new Date(Number(node.dataset.t) * 1000).toLocaleString();
  }
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store", credentials: "same-origin" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function deviceRow(d) {
  const last = d.last_reading;
  const values = last ? last.values.filter((v) => v.name.split(":")[0] !== "bat").map(fmt).join("  ") : "—";
  const cell = el("td", { class: "last-reading" }, values, el("br"), el("small", {}, last ? timeEl(last.time) : "never"));
  return el(
    "tr",
    { "data-kid": d.kid },
    el("td", {}, el("a", { href: d.links.page }, d.label || d.kid.slice(0, 12)), el("br"), el("code", { class: "kid" }, `${d.kid.slice(0, 16)}…`)),
    el("td", {}, el("span", { class: `status status-${d.status}` }, d.status)),
    cell,
    el("td", { class: "battery" }, d.battery_v === null ? "—" : `${d.battery_v.toFixed(2)} V`),
    el("td", { class: "readings-count" }, d.readings),
    el("td", {}, timeEl(d.last_ack)),
  );
}

function replaceRows(tableId, rows, emptyText, columns) {
  const body = document.querySelector(`#${tableId} tbody`);
  if (!body) return;
  body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: String(columns) }, emptyText))]));
}

function batchRow(b) {
  const state = el("td", {}, el("span", { class: `state state-${b.state}` }, b.state));
  if (b.last_error) state.append(el("br"), el("small", { class: "error" }, b.last_error));
  return el("tr", {}, el("td", {}, b.batch_no), el("td", {}, el("code", {}, `${b.hash.slice(0, 16)}…`)), el("td", {}, b.bundles), el("td", {}, timeEl(b.created_at)), state, el("td", {}, b.attempts));
}

function bundleRow(b) {
  return el(
    "tr",
    {},
    el("td", {}, `${b.seq}-${b.last_seq}`),
    el("td", {}, b.readings),
    el("td", {}, timeEl(b.received_at)),
    el("td", {}, el("span", { class: `state state-${b.state}` }, b.state)),
    el("td", {}, el("a", { href: b.proof }, el("code", {}, `${b.hash.slice(0, 16)}…`))),
  );
}

function rejectionRows(r) {
  const counts = { ...r.by_reason };
  for (const [reason, why] of Object.entries(r.unstored_by_reason)) {
    counts[reason] = (counts[reason] || 0) + Object.values(why).reduce((a, b) => a + b, 0);
  }
  return Object.keys(counts).sort().map((reason) => el("tr", {}, el("td", {}, reason), el("td", {}, counts[reason])));
}

// ---- plots (device page) -----------------------------------------------------------------------------
const plots = new Map(); // reading name -> {plot}
const view = { from: 0, to: 0 }; // the chosen range: every plot's x axis spans all of it

function seriesByName(readings) {
  const byName = new Map();
  for (const r of readings) {
    if (r.value === null) continue;
    if (!byName.has(r.name)) byName.set(r.name, { quantity: r.quantity, unit: r.unit, xs: [], ys: [] });
    const s = byName.get(r.name);
    s.xs.push(r.time);
    s.ys.push(r.value);
  }
  return byName;
}

function drawPlots(readings) {
  const container = document.getElementById("plots");
  if (!container || typeof uPlot === "undefined") return;
  const width = Math.max(320, Math.min(container.clientWidth || 800, 1100));
  for (const [name, s] of seriesByName(readings)) {
    const data = [s.xs, s.ys];
    const entry = plots.get(name);
    if (entry) {
      entry.box.dataset.points = String(s.xs.length); // how many points are plotted, for tests
      entry.plot.setData(data, false);
      entry.plot.setScale("x", { min: view.from, max: view.to });
      continue;
    }
    const box = el("div", { class: "plot", "data-name": name, "data-points": String(s.xs.length) });
    container.append(box);
    const opts = {
      title: `${s.quantity} (${s.unit})`,
      width,
      height: 220,
      scales: { x: { time: true, range: () => [view.from, view.to] } },
      // points as well as the line: a new device's few readings at the range's edge are otherwise invisible
      series: [{}, { label: `${name} (${s.unit})`, stroke: "#1f6feb", width: 1.5, points: { show: true, size: 5 } }],
      axes: [{}, { label: s.unit }],
    };
    plots.set(name, { plot: new uPlot(opts, data, box), box });
  }
}

// ---- polling -------------------------------------------------------------------------------------------
let polls = 0;

function brokerLine(b) {
  const node = document.getElementById("broker");
  if (!node) return;
  const where = ` ${b.host}:${b.port}`;
  if (b.connected) node.replaceChildren(el("span", { class: "status status-online" }, "broker connected"), where);
  else node.replaceChildren(el("span", { class: "status status-silent" }, "broker not connected"), where + (b.last_error ? ` (${b.last_error})` : ""));
}

async function pollOverview() {
  const [devices, batches, rejections, broker] = await Promise.all([getJSON("/api/devices"), getJSON("/api/batches?limit=20"), getJSON("/api/rejections?limit=1"), getJSON("/api/broker")]);
  brokerLine(broker);
  replaceRows("devices", devices.devices.map(deviceRow), "No devices registered yet.", 6);
  replaceRows("batches", batches.batches.map(batchRow), "No batches sealed yet.", 6);
  replaceRows("rejections", rejectionRows(rejections), "None: every message was valid.", 2);
}

async function pollDevice(kid) {
  const range = Number(document.getElementById("range")?.value || 3600);
  const now = Date.now() / 1000;
  view.from = now - range;
  view.to = now;
  const [devices, bundles, readings] = await Promise.all([
    getJSON("/api/devices"),
    getJSON(`/api/bundles?kid=${kid}&limit=20`),
    getJSON(`/api/devices/${kid}/readings?from=${Math.floor(now - range)}&to=${Math.ceil(now + 60)}`),
  ]);
  const device = devices.devices.find((d) => d.kid === kid);
  if (device) {
    replaceRows("devices", [deviceRow(device)], "", 6);
    for (const node of document.querySelectorAll("p .readings-count")) node.textContent = device.readings;
  }
  replaceRows("bundles", bundles.bundles.map(bundleRow), "No bundles yet.", 5);
  drawPlots(readings.readings);
  const csv = document.getElementById("csv");
  if (csv) csv.href = `/api/devices/${kid}/readings?format=csv&from=${Math.floor(now - range)}`;
}

async function poll() {
  const live = document.getElementById("live");
  try {
    if (document.body.dataset.page === "device") await pollDevice(document.body.dataset.kid);
    else await pollOverview();
    polls += 1;
    live.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
    live.className = "live";
    live.dataset.polls = String(polls);
  } catch (err) {
    live.textContent = `gateway not answering (${err.message}): retrying`;
    live.className = "live offline";
  }
  refreshTimes();
}

document.addEventListener("DOMContentLoaded", () => {
  refreshTimes();
  setInterval(refreshTimes, 1000);
  const range = document.getElementById("range");
  if (range) range.addEventListener("change", poll);
  poll();
  setInterval(poll, POLL_MS);
});
