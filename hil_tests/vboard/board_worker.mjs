// One board's microcontroller: a MicroPython VM in a worker thread, with its flash, clock, machine module,
// plugins and serial REPL. The supervisor (board_host.mjs) owns power, reset, the watchdog timer and the
// serial line; it starts a fresh worker for every (soft or hard) reset, as a board restarts its VM.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parentPort, workerData } from "node:worker_threads";
import { createClock } from "./clock.mjs";
import { SerialRepl } from "./repl.mjs";
import { startVM } from "./vm_core.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
// The largest unit of code the raw REPL accepts in one go (mpremote sends far less).
const MAX_SOURCE_BYTES = 32 * 1024;
// Heap for what the emulation keeps live (shims a real board has in C): it is not the board's RAM. What the
// emulation leaves of it unused is pinned before the baseline is taken (below), so it is no extra room.
const EMULATION_BYTES = 64 * 1024;
// The modules a board has built in that the emulation provides in MicroPython: loaded before the board's RAM is
// measured, so what they take is the emulation's (the baseline), not the firmware's.
const BUILTIN_SHIMS = ["asyncio", "machine", "network", "ntptime", "tls", "ssl", "_vb_streams", "binascii", "json", "bluetooth"];

const cfg = workerData;
const pending = [];
let flushQueued = false;
let lastByte = 0;

// Serial output as a board sends it: "\n" from print() goes out as "\r\n". Batched per turn of the event loop.
function serialOut(bytes) {
  const cooked = [];
  for (const b of bytes) {
    if (b === 0x0a && lastByte !== 0x0d) cooked.push(0x0d);
    cooked.push(b);
    lastByte = b;
  }
  pending.push(Buffer.from(cooked));
  if (!flushQueued) {
    flushQueued = true;
    setImmediate(flushOut);
  }
}

function flushOut() {
  flushQueued = false;
  if (pending.length === 0) return;
  const data = Buffer.concat(pending.splice(0));
  parentPort.postMessage({ t: "out", data });
}

const log = (text) => parentPort.postMessage({ t: "log", text });
let control = null;

const plugins = [`${HERE}/flash.mjs=${cfg.flashDir}`, `${HERE}/mcu.mjs`, ...(cfg.plugins || [])];
const { mp, model } = await startVM(
  {
    ram: cfg.ram,
    ceiling: cfg.ceiling || 0, // default 4 x RAM (vm_core.mjs); see BoardOptions.ram_ceiling_bytes
    board: cfg.boardPath,
    plugins,
    clock: createClock(cfg.clockShared),
    flashState: cfg.flashShared,
    mcu: cfg.mcu,
    maxSourceBytes: MAX_SOURCE_BYTES,
    emulationBytes: EMULATION_BYTES,
    beforeHalt: () => flushOut(),
  },
  {
    linebuffer: false,
    stdout: (chunk) => serialOut(chunk),
    stderr: (chunk) => serialOut(chunk),
    stats: new Int32Array(cfg.statsShared),
    onControl: (fn) => {
      control = fn;
    },
  },
);

for (const name of BUILTIN_SHIMS) {
  try {
    mp.pyimport(name);
  } catch {
    /* a shim whose plugin is not installed */
  }
}
const repl = new SerialRepl(mp, {
  out: (bytes) => serialOut(bytes),
  log,
  onSoftReset: ({ raw }) => {
    flushOut();
    parentPort.postMessage({ t: "softreset", raw });
  },
});

// The part of EMULATION_BYTES the emulation does not use is pinned (a bytearray held by the REPL's namespace,
// counted in the baseline), so that the firmware's room up to the ceiling is the ceiling, not the ceiling plus
// whatever the shims happened to leave.
if (cfg.ram) {
  const gc = mp.pyimport("gc");
  gc.collect(); // collects as it returns to JS
  const slack = EMULATION_BYTES - (gc.mem_alloc() - model.module.rescue()) - 1024;
  if (slack > 0) mp.runPython(`_vboard_emulation_slack = bytearray(${slack})`);
}
// The REPL's own helpers are the emulation's too: the baseline is taken after them.
const baseline = cfg.ram ? model.setBaseline() : 0;
if (process.env.VBOARD_RAM_TRACE) log(`RAM baseline ${baseline} B, ceiling ${model.module.ceiling()} B`);
if (baseline > EMULATION_BYTES) {
  log(`the emulation keeps ${baseline} bytes live, more than the ${EMULATION_BYTES} bytes allowed for it`);
}

parentPort.on("message", (m) => {
  if (m.t === "in") repl.feed(m.data);
  else if (m.t === "ping") parentPort.postMessage({ t: "pong", n: m.n });
  else if (m.t === "control") {
    try {
      parentPort.postMessage({ t: "reply", req: m.req, result: control(m.plugin, m.msg) ?? null });
    } catch (e) {
      parentPort.postMessage({ t: "reply", req: m.req, error: String(e && e.message ? e.message : e) });
    }
  }
});

parentPort.postMessage({ t: "booted" });
await repl.boot({ raw: Boolean(cfg.raw) });
