// Start the MicroPython WebAssembly VM, copy host folders into its filesystem, optionally model the board's RAM
// (ram_model.mjs), and run one script. Used by run_vm.mjs, in-process or inside a worker thread (the watchdog).
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import v8 from "node:v8";
import { fileURLToPath, pathToFileURL } from "node:url";
import vm from "node:vm";
import { CLOCK_PY, createClock } from "./clock.mjs";
import { createRamModel, imposeCeiling, STAT_LEN } from "./ram_model.mjs";

const SHIM_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "mpy");

// Bytes left free in the C allocator for the JS bridge when the ceiling is on (plus the script's length).
const BRIDGE_RESERVE = 32 * 1024;

// The rescue reserve kept in the GC heap, on top of the ceiling (see ram_model.mjs, part 3): room for the rest of
// a step once an allocation failed at the ceiling. A quarter of the RAM, at most an eighth of the ceiling.
export function rescueBytesFor(ram, ceiling) {
  return Math.max(4096, Math.floor(Math.min(ram / 4, ceiling / 8) / 16) * 16);
}

function mkdirs(FS, dir) {
  let cur = "";
  for (const part of dir.split("/").filter(Boolean)) {
    cur += "/" + part;
    try {
      FS.mkdir(cur);
    } catch {
      /* exists */
    }
  }
}

export function copyTree(FS, hostDir, vmDir) {
  mkdirs(FS, vmDir);
  for (const entry of fs.readdirSync(hostDir, { withFileTypes: true })) {
    if (entry.name === "__pycache__" || entry.name.startsWith(".")) continue;
    const src = path.join(hostDir, entry.name);
    const dst = vmDir.replace(/\/$/, "") + "/" + entry.name;
    if (entry.isDirectory()) copyTree(FS, src, dst);
    else FS.writeFile(dst, fs.readFileSync(src));
  }
}

// V8's full collection, to release Python objects held only by dead JS proxies (see ram_model.mjs).
function v8Collector() {
  try {
    v8.setFlagsFromString("--expose-gc");
    return vm.runInNewContext("gc");
  } catch {
    return null;
  }
}

// Emscripten reports each refused memory growth on console.error; with the ceiling on these are expected.
let refusedGrowths = 0;
function filterGrowthMessages() {
  const orig = console.error;
  console.error = (...a) => {
    const s = String(a[0]);
    if (s.startsWith("growMemory: Attempted to grow heap") || s.startsWith("Failed to grow the heap")) {
      refusedGrowths++;
      return;
    }
    orig(...a);
  };
}

// SystemExit's code from the PythonError message ("SystemExit: 3", "SystemExit", "SystemExit: None").
function systemExitCode(message) {
  const m = /SystemExit(?::\s*(.*))?\s*$/.exec(message.trim().split("\n").pop() || "");
  if (!m || m[1] === undefined || m[1] === "None" || m[1] === "") return 0;
  const n = parseInt(m[1], 10);
  return Number.isNaN(n) ? 1 : n;
}

// Plugins give the VM what a board has and this port lacks (machine, network, sensors, flash): each is a JS
// module exporting `async install(mp, ctx)`, called after the VM starts and before the script runs, where
// ctx = { opts, io, clock, board, arg }: `board` is the parsed board profile (--board FILE) or null, `arg` the
// text after the plugin path's first "=" (e.g. a sensors file), `clock` the board's clock (clock.mjs).
// MicroPython shims live in hil_tests/vboard/mpy/ and appear on sys.path as "/_vboard", where a board's
// frozen modules are; they are never part of the board's flash.
// install() may return { control(msg) }: how the harness changes the plugin's state while the board runs
// (sensor values, faults). Controls are routed by plugin name (the file name without .mjs): from the board
// host (board_host.mjs) and, for test scripts in the VM, through the JS module `vboard_control`
// (send(name, json_text) -> json_text); firmware never imports it.
async function installPlugins(mp, opts, io, clock) {
  const board = opts.board ? JSON.parse(fs.readFileSync(opts.board, "utf8")) : null;
  const controls = new Map();
  for (const spec of opts.plugins || []) {
    const eq = spec.indexOf("=");
    const file = eq < 0 ? spec : spec.slice(0, eq);
    const arg = eq < 0 ? "" : spec.slice(eq + 1);
    const plugin = await import(pathToFileURL(path.resolve(file)).href);
    const handle = await plugin.install(mp, { opts, io, clock, board, arg });
    if (handle && typeof handle.control === "function") controls.set(path.basename(file, ".mjs"), handle);
  }
  const control = (name, msg) => {
    const handle = controls.get(name);
    if (!handle) throw new Error(`no plugin named ${name} takes controls`);
    return handle.control(msg);
  };
  mp.registerJsModule("vboard_control", {
    send: (name, text) => JSON.stringify(control(name, JSON.parse(text)) ?? null),
  });
  return control;
}

// opts: { heap, ram, ceiling, mounts, paths, script, args, board, plugins, clock, maxSourceBytes,
//         emulationBytes (extra heap for what the emulation itself keeps live: see model.setBaseline()) }
// io: { stdout(text), stderr(text), stats (Int32Array for the watchdog, optional),
//       onControl(fn) (optional: receives control(pluginName, msg) once the plugins are installed),
//       linebuffer (default true: stdout/stderr get lines; false: they get chunks of bytes as Uint8Array) }
// Starts the VM with the board's facilities; returns { mp, control, clock, flush }. Code run afterwards must
// fit in maxSourceBytes when it crosses the JS bridge (with the RAM ceiling on, the C allocator keeps only
// that much room free for it).
export async function startVM(opts, io) {
  filterGrowthMessages();
  const { loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript");
  const ram = opts.ram || 0;
  const ceiling = ram ? opts.ceiling || 4 * ram : 0;
  const rescue = ram ? rescueBytesFor(ram, ceiling) : 0;
  const linebuffer = io.linebuffer !== false;
  const gcHeapBytes = ram ? ceiling + rescue + (opts.emulationBytes || 0) : opts.heap;
  const mp = await loadMicroPython({
    heapsize: gcHeapBytes,
    stdout: io.stdout,
    stderr: io.stderr,
    linebuffer,
  });
  mp.registerJsModule("hostclock", { now_ms: () => performance.now() });
  // A board's os.urandom draws from its hardware RNG; this VM has none, so the host's CSPRNG stands in.
  // Bytes cross the JS boundary as hex (Python bytes arrive in JS only as proxies).
  mp.registerJsModule("vboard_random", { hex: (n) => crypto.randomBytes(n).toString("hex") });
  mp.runPython(
    "import os, vboard_random\n" +
      "def _urandom(n, _hex=vboard_random.hex):\n" +
      "    if not isinstance(n, int) or n < 0:\n" +
      "        raise ValueError('urandom: n must be an int >= 0')\n" +
      "    return bytes.fromhex(_hex(n))\n" +
      "os.urandom = _urandom\n" +
      "del _urandom, os, vboard_random\n",
  );
  // With plugins the VM is a board: time reads the board's clock (clock.mjs), shims are on the path.
  const boardMode = Boolean(opts.plugins && opts.plugins.length);
  const clock = opts.clock || createClock();
  if (boardMode) {
    mp.registerJsModule("vboard_clock", clock.module);
    mp.runPython(CLOCK_PY);
    copyTree(mp.FS, SHIM_DIR, "/_vboard");
  }
  const control = await installPlugins(mp, opts, io, clock);
  if (io.onControl) io.onControl(control);
  const model = createRamModel(mp, {
    ram,
    ceiling,
    rescue,
    stats: io.stats || new Int32Array(STAT_LEN),
    stderr: (s) => (linebuffer ? io.stderr(s) : io.stderr(Buffer.from(s + "\n"))),
    v8gc: ram ? v8Collector() : null,
    hostDelayMs: boardMode ? clock.hostDelayMs : (ms) => ms,
  });
  mp.registerJsModule("vboard_ram", model.module);
  for (const m of opts.mounts || []) {
    const i = m.lastIndexOf(":");
    copyTree(mp.FS, m.slice(0, i), m.slice(i + 1));
  }
  mp.runPython(
    `import sys\nsys.path[:0] = ${JSON.stringify([...(opts.paths || []), ...(boardMode ? ["/_vboard"] : [])])}\n` +
      `sys.argv[:] = ${JSON.stringify([opts.script || "", ...(opts.args || [])])}`,
  );
  if (ram) {
    model.install();
    // Holes must stay smaller than the GC heap, or its auto-split could grow into them.
    const reserve = Math.min(BRIDGE_RESERVE, Math.floor(ceiling / 4)) + (opts.maxSourceBytes || 0) + 64;
    if (reserve >= gcHeapBytes / 2) throw new Error(`script too large for a ${gcHeapBytes}-byte GC heap`);
    imposeCeiling(mp._module, reserve, model.onRefusal);
  }
  // Output is line-buffered; a last line without "\n" is flushed when the top level ends.
  const flush = () => {
    if (!linebuffer) return;
    const M = mp._module;
    for (const [buf, out] of [["_stdoutBuffer", io.stdout], ["_stderrBuffer", io.stderr]]) {
      if (M[buf] && M[buf].length) {
        out(M._textDecoder.decode(new Uint8Array(M[buf])));
        M[buf] = [];
      }
    }
  };
  return { mp, control, clock, flush, model };
}

// Run opts.script in a new VM (see startVM). Returns a promise of the exit status once the script's top level
// finished (tasks may still run after it).
export async function runVM(opts, io) {
  const source = fs.readFileSync(opts.script, "utf8");
  const { mp, flush } = await startVM({ ...opts, maxSourceBytes: Buffer.byteLength(source) }, io);
  try {
    await mp.runPythonAsync(source);
  } catch (e) {
    flush();
    if (e.name !== "PythonError") throw e;
    if (e.type === "SystemExit") return systemExitCode(e.message);
    io.stderr(e.message.replace(/\n$/, ""));
    return 1;
  }
  flush();
  return 0;
}

export function refusedGrowthCount() {
  return refusedGrowths;
}
