// Run one MicroPython script inside the MicroPython WebAssembly VM, with host folders copied into the VM's
// filesystem. The firmware sees the same paths it has on a board (/pinseal/..., /lib/...).
//
//   node run_vm.mjs [--heap BYTES] [--ram BYTES [--ceiling BYTES]] [--timeout SECONDS]
//                   [--mount HOST_DIR:VM_DIR]... [--path VM_DIR]... [--board BOARD_JSON]
//                   [--plugin FILE.mjs[=ARG]]... SCRIPT.py [ARG...]
//
// --heap      initial MicroPython heap (it grows by itself; not a limit). Ignored with --ram.
// --ram       model a board with this much RAM (board mode; ESP32 without PSRAM: 100000). asyncio then runs one
//             task step per return to JS, collects there, and throws MemoryError into the task about to resume
//             while live bytes exceed BYTES; the heap is capped at --ceiling (default 4 x BYTES), so runaway
//             allocation inside one step raises MemoryError. See ram_model.mjs and docs/virtual-board.md.
// --board     the board profile (boards/<id>/board.json) plugins read (pins, sensors, RAM).
// --plugin    a JS module whose install(mp, ctx) adds a board facility (vm_core.mjs); repeatable.
// --timeout   kill the VM after SECONDS of wall time (it runs in a worker thread; a watchdog in the main
//             thread terminates it even inside an endless synchronous loop). 0 = no watchdog (default).
//
// Exit status: 0 when the script finished (or SystemExit's code), 1 when it raised (traceback on stderr),
// 2 on bad usage, 3 when the watchdog killed the VM.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { STAT, STAT_LEN } from "./ram_model.mjs";
import { copyTree as copyTreeImpl, runVM } from "./vm_core.mjs";

export const copyTree = copyTreeImpl;
export const EXIT_TIMEOUT = 3;

function parseArgs(argv) {
  const opts = { heap: 1024 * 1024, ram: 0, ceiling: 0, timeout: 0, mounts: [], paths: [], plugins: [], board: null, script: null, args: [] };
  const int = (v, name) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} needs a non-negative number, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (opts.script) opts.args.push(a);
    else if (a === "--heap") opts.heap = Math.floor(int(argv[++i], a));
    else if (a === "--ram") opts.ram = Math.floor(int(argv[++i], a));
    else if (a === "--ceiling") opts.ceiling = Math.floor(int(argv[++i], a));
    else if (a === "--timeout") opts.timeout = int(argv[++i], a);
    else if (a === "--mount") opts.mounts.push(argv[++i]);
    else if (a === "--path") opts.paths.push(argv[++i]);
    else if (a === "--board") opts.board = argv[++i];
    else if (a === "--plugin") opts.plugins.push(argv[++i]);
    else if (a.startsWith("--")) throw new Error(`unknown option ${a}`);
    else opts.script = a;
  }
  if (!opts.script) throw new Error("no script given");
  if (opts.ceiling && !opts.ram) throw new Error("--ceiling needs --ram");
  if (opts.ram && opts.ceiling && opts.ceiling < opts.ram) throw new Error("--ceiling must be >= --ram");
  return opts;
}

// In-process run (no watchdog): the original behaviour of this script.
const UNSETTLED =
  "run_vm: the script's top level never finished: it awaits something no task, timer or JS callback will complete";

async function runHere(opts) {
  let finished = false;
  process.on("exit", () => {
    if (!finished && process.exitCode === 13) {
      process.stderr.write(UNSETTLED + "\n");
    }
  });
  const code = await runVM(opts, {
    stdout: (s) => process.stdout.write(s + "\n"),
    stderr: (s) => process.stderr.write(s + "\n"),
  });
  finished = true;
  if (code !== 0) process.exit(code);
  // code 0: let pending asyncio tasks and timers run out, as before.
}

// The VM in a worker thread; output comes over messages in order; the main thread keeps the clock.
function runWatched(opts) {
  const shared = new SharedArrayBuffer(STAT_LEN * 4);
  const stats = new Int32Array(shared);
  const worker = new Worker(new URL(import.meta.url), { workerData: { opts, shared }, stdout: false, stderr: false });
  let done = false;
  let topLevelDone = false;
  const finish = (code) => {
    if (done) return;
    done = true;
    clearTimeout(watchdog);
    process.exitCode = code;
    worker.terminate().finally(() => process.exit(code));
  };
  worker.on("message", (m) => {
    if (m.t === "o") process.stdout.write(m.s + "\n");
    else if (m.t === "e") process.stderr.write(m.s + "\n");
    else if (m.t === "x") finish(m.code);
    else if (m.t === "d") topLevelDone = true;
  });
  worker.on("error", (e) => {
    process.stderr.write(`run_vm: the VM thread failed: ${e && e.stack ? e.stack : e}\n`);
    finish(1);
  });
  worker.on("exit", (code) => {
    if (!topLevelDone && !done) {
      process.stderr.write(UNSETTLED + "\n");
      finish(13);
    } else finish(code);
  });
  const watchdog = setTimeout(() => {
    const ram = opts.ram
      ? `; asyncio steps ${Atomics.load(stats, STAT.steps)}, last live heap ${Atomics.load(stats, STAT.live)} bytes`
      : "";
    process.stderr.write(
      `run_vm: TIMEOUT: killed the VM after ${opts.timeout} s (${opts.script}); an endless loop or a step that ` +
        `never returns to JS${ram}\n`,
    );
    done = true;
    worker.terminate().finally(() => process.exit(EXIT_TIMEOUT));
  }, opts.timeout * 1000);
}

async function workerMain() {
  const { opts, shared } = workerData;
  const post = (t) => (s) => parentPort.postMessage({ t, s });
  try {
    const code = await runVM(opts, { stdout: post("o"), stderr: post("e"), stats: new Int32Array(shared) });
    parentPort.postMessage({ t: "d" });
    if (code !== 0) parentPort.postMessage({ t: "x", code });
    // code 0: the thread ends (exit code 0) once pending asyncio tasks and timers have run out.
  } catch (e) {
    parentPort.postMessage({ t: "e", s: `run_vm: ${e && e.stack ? e.stack : e}` });
    parentPort.postMessage({ t: "x", code: 1 });
  }
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`run_vm: ${e.message}\n`);
    process.exit(2);
  }
  if (opts.timeout > 0) runWatched(opts);
  else await runHere(opts);
}

if (!isMainThread) await workerMain();
else if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
