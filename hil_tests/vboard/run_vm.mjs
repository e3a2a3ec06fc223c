// Run one MicroPython script inside the MicroPython WebAssembly VM, with host folders copied into the VM's
// filesystem. The firmware sees the same paths it has on a board (/pinseal/..., /lib/...).
//
//   node run_vm.mjs [--heap BYTES] [--mount HOST_DIR:VM_DIR]... [--path VM_DIR]... SCRIPT.py [ARG...]
//
// Exit status: 0 when the script finished, 1 when it raised (traceback on stderr), 2 on bad usage.
import fs from "node:fs";
import path from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

function parseArgs(argv) {
  const opts = { heap: 1024 * 1024, mounts: [], paths: [], script: null, args: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (opts.script) opts.args.push(a);
    else if (a === "--heap") opts.heap = parseInt(argv[++i], 10);
    else if (a === "--mount") opts.mounts.push(argv[++i]);
    else if (a === "--path") opts.paths.push(argv[++i]);
    else if (a.startsWith("--")) throw new Error(`unknown option ${a}`);
    else opts.script = a;
  }
  if (!opts.script) throw new Error("no script given");
  return opts;
}

function mkdirs(FS, dir) {
  let cur = "";
  for (const part of dir.split("/").filter(Boolean)) {
    cur += "/" + part;
    try { FS.mkdir(cur); } catch { /* exists */ }
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

async function main() {
  let opts;
  try { opts = parseArgs(process.argv.slice(2)); } catch (e) {
    process.stderr.write(`run_vm: ${e.message}\n`); process.exit(2);
  }
  const mp = await loadMicroPython({
    heapsize: opts.heap,
    stdout: (s) => process.stdout.write(s + "\n"),
    stderr: (s) => process.stderr.write(s + "\n"),
    linebuffer: true,
  });
  mp.registerJsModule("hostclock", { now_ms: () => performance.now() });
  for (const m of opts.mounts) {
    const i = m.lastIndexOf(":");
    copyTree(mp.FS, m.slice(0, i), m.slice(i + 1));
  }
  const extraPaths = JSON.stringify(opts.paths);
  mp.runPython(`import sys\nsys.path[:0] = ${extraPaths}\nsys.argv[:] = ${JSON.stringify([opts.script, ...opts.args])}`);
  try {
    await mp.runPythonAsync(fs.readFileSync(opts.script, "utf8"));
  } catch (e) {
    if (e.name !== "PythonError") throw e;
    if (e.type === "SystemExit") process.exit(0);
    process.stderr.write(e.message + "\n");
    process.exit(1);
  }
}

await main();
