// The virtual boards' supervisor: one Node process serving one or many boards (a fleet shares it: each board is a
// worker thread, ~13 MB, instead of a process, ~55 MB). For each board it plays the parts outside the
// microcontroller: the power supply, the reset button, the watchdog timer, the RTC domain (clock and RTC memory
// survive resets and deep sleep, not a power cut) and the USB-serial bridge.
//
// It talks to its owner (pinseal_vboard, Python) in JSON lines: commands on stdin, events on stdout.
//   {"op":"start","id":ID,"board":PROFILE_JSON,"flash":DIR,"plugins":[SPEC...],"hang_s":N,"rtc":"unset"|"host"}
//   {"op":"serial","id":ID,"b64":DATA}             bytes typed on the serial line
//   {"op":"uart","id":ID,"b64":DATA}               bytes arriving on the profile's UART (the second line)
//   {"op":"ble","id":ID,"ev":{...}}                 what happened over the air (radio.mjs, pinseal_vboard.radio)
//   {"op":"power","id":ID,"on":false,"tear":BOOL}  cut the power (tear: the flash write in progress is torn)
//   {"op":"power","id":ID,"on":true}               power on (cold boot)
//   {"op":"reset","id":ID}                         the reset button
//   {"op":"clock","id":ID,"jump_ms":N|"set_wall_ms":N|"speed":F}
//   {"op":"control","id":ID,"req":N,"plugin":NAME,"msg":{...}}
//   {"op":"stats","id":ID,"req":N}                 the RAM model's live/peak bytes of this boot
//   {"op":"stop","id":ID}
// Events: {"ev":"serial","id","b64"} {"ev":"uart","id","b64"} {"ev":"ble","id","msg"} {"ev":"state","id","state","cause"} {"ev":"log","id","text"}
//         {"ev":"reply","id","req","result"|"error"} {"ev":"error","text"}
// The host exits when stdin closes (its owner died), taking every board with it: a power cut for all.
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { Worker } from "node:worker_threads";
import { CLOCK_SLOTS, createClock } from "./clock.mjs";
import { FLASH, FLASH_SLOTS } from "./flash.mjs";
import { CAUSE, MCU, MCU_SLOTS } from "./mcu.mjs";
import { STAT, STAT_LEN } from "./ram_model.mjs";

const WORKER = new URL("./board_worker.mjs", import.meta.url);
// A board without a battery-backed RTC starts at 2000-01-01 (MicroPython's ESP32 and RP2 ports).
const RTC_UNSET_MS = Date.UTC(2000, 0, 1);
const PING_MS = 1000;
const TEAR_WAIT_MS = 2000;

const emit = (ev) => process.stdout.write(JSON.stringify(ev) + "\n");
const boards = new Map();

class Board {
  constructor(spec) {
    this.id = spec.id;
    this.spec = spec;
    this.profile = JSON.parse(fs.readFileSync(spec.board, "utf8"));
    this.ram = spec.ram || this.profile.ram.free_heap_bytes;
    this.worker = null;
    this.state = "off";
    this.hangMs = (spec.hang_s ?? 20) * 1000;
    this.uniqueIdHex = createHash("sha256").update(path.resolve(spec.flash)).digest("hex").slice(0, 12);
  }

  log(text) {
    emit({ ev: "log", id: this.id, text });
  }

  setState(state, cause) {
    this.state = state;
    emit({ ev: "state", id: this.id, state, cause });
  }

  powerOn() {
    this.clock = createClock();
    if (this.spec.rtc !== "host") this.clock.setWallMs(RTC_UNSET_MS);
    this.rtcMemoryHex = "";
    this.boot(CAUSE.PWRON_RESET, false);
  }

  boot(cause, raw) {
    this.cause = cause;
    this.clock.restartTicks();
    this.flashShared = new SharedArrayBuffer(FLASH_SLOTS * 4);
    this.mcuShared = new SharedArrayBuffer(MCU_SLOTS * 8);
    this.statsShared = new SharedArrayBuffer(STAT_LEN * 4);
    this.lastPong = Date.now();
    this.pingN = 0;
    const worker = new Worker(WORKER, {
      workerData: {
        boardPath: this.spec.board,
        flashDir: this.spec.flash,
        plugins: this.spec.plugins || [],
        ram: this.ram,
        ceiling: this.spec.ram_ceiling || 0,
        clockShared: this.clock.buffer,
        flashShared: this.flashShared,
        mcu: {
          shared: this.mcuShared,
          uniqueIdHex: this.uniqueIdHex,
          resetCause: cause,
          rtcMemoryHex: this.rtcMemoryHex,
        },
        statsShared: this.statsShared,
        raw,
      },
      stdout: false,
      stderr: false,
    });
    this.worker = worker;
    this.setState("booting", cause);
    worker.on("message", (m) => this.onWorker(worker, m));
    worker.on("error", (e) => {
      if (worker !== this.worker) return;
      this.serial(`\r\nvboard: the VM failed: ${e && e.stack ? e.stack : e}\r\n`);
      this.log(`VM failed: ${e && e.stack ? e.stack : e}`);
      this.halt("crashed");
    });
  }

  onWorker(worker, m) {
    if (worker !== this.worker) return;
    if (m.t === "out") emit({ ev: "serial", id: this.id, b64: Buffer.from(m.data).toString("base64") });
    else if (m.t === "uart") emit({ ev: "uart", id: this.id, b64: Buffer.from(m.data).toString("base64") });
    else if (m.t === "ble") emit({ ev: "ble", id: this.id, msg: m.msg });
    else if (m.t === "log") this.log(m.text);
    else if (m.t === "booted") this.setState("running", this.cause);
    else if (m.t === "pong") this.lastPong = Date.now();
    else if (m.t === "reply") emit({ ev: "reply", id: this.id, req: m.req, result: m.result, error: m.error });
    else if (m.t === "softreset") this.restart(this.cause, m.raw);
    else if (m.t === "reset") {
      this.rtcMemoryHex = m.rtcMemoryHex;
      // machine.reset(): ESP32 reports a software reset; RP2 reboots through its watchdog.
      this.restart(this.profile.port === "rp2" ? CAUSE.WDT_RESET : CAUSE.SOFT_RESET, false);
    } else if (m.t === "deepsleep") {
      this.rtcMemoryHex = m.rtcMemoryHex;
      this.sleep(m.ms);
    }
  }

  serial(text) {
    emit({ ev: "serial", id: this.id, b64: Buffer.from(text).toString("base64") });
  }

  async halt(state) {
    const w = this.worker;
    this.worker = null;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = null;
    if (w) await w.terminate();
    this.setState(state, this.cause);
  }

  async restart(cause, raw) {
    await this.halt("resetting");
    this.boot(cause, raw);
  }

  async sleep(ms) {
    await this.halt("deepsleep");
    const wake = () => this.boot(CAUSE.DEEPSLEEP_RESET, false);
    // deepsleep(0) sleeps until an external wake-up; the harness's reset command ends it.
    if (ms > 0) this.wakeTimer = setTimeout(wake, this.clock.hostDelayMs(ms));
  }

  async powerOff(tear) {
    if (tear && this.worker) {
      // Let the next flash write land only in part, then cut (or cut anyway once the wait is over).
      const flash = new Int32Array(this.flashShared);
      const torn = Atomics.load(flash, FLASH.tornWrites);
      Atomics.store(flash, FLASH.tearArmed, 1);
      const deadline = Date.now() + TEAR_WAIT_MS;
      while (Atomics.load(flash, FLASH.tornWrites) === torn && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 2));
      }
    }
    await this.halt("off");
  }

  // Supervisor checks, every few ms: the watchdog timer and a VM that stopped answering.
  check(now) {
    if (!this.worker || this.state !== "running") return;
    const mcu = new Float64Array(this.mcuShared);
    const deadline = mcu[MCU.wdtDeadline];
    if (deadline > 0 && performance.timeOrigin + performance.now() > deadline) {
      this.log("watchdog timeout: reset");
      this.restart(CAUSE.WDT_RESET, false);
      return;
    }
    if (this.hangMs > 0 && now - this.lastPong > this.hangMs) {
      const msg =
        `vboard: the board's VM has not returned to its event loop for ${Math.round((now - this.lastPong) / 1000)} s ` +
        "(an endless synchronous loop?). Synchronous code cannot be interrupted in this VM and no watchdog " +
        "is running: pressing reset.";
      this.serial(`\r\n${msg}\r\n`);
      this.log(msg);
      this.restart(CAUSE.HARD_RESET, false);
      return;
    }
    if (now - this.lastPingAt >= PING_MS || !this.lastPingAt) {
      this.lastPingAt = now;
      this.worker.postMessage({ t: "ping", n: ++this.pingN });
    }
  }
}

async function handle(cmd) {
  const board = boards.get(cmd.id);
  if (cmd.op === "start") {
    if (board) throw new Error(`board ${cmd.id} already exists`);
    const b = new Board(cmd);
    boards.set(cmd.id, b);
    b.powerOn();
    return;
  }
  if (!board) throw new Error(`no board ${cmd.id}`);
  if (cmd.op === "serial") {
    if (board.worker && board.state === "running") board.worker.postMessage({ t: "in", data: Buffer.from(cmd.b64, "base64") });
    // Input to a board that is off, resetting or asleep is lost, as on a UART nobody listens to.
  } else if (cmd.op === "uart") {
    if (board.worker && board.state === "running") board.worker.postMessage({ t: "uart_in", data: Buffer.from(cmd.b64, "base64") });
  } else if (cmd.op === "ble") {
    if (board.worker && board.state === "running") board.worker.postMessage({ t: "ble_in", ev: cmd.ev });
  } else if (cmd.op === "power") {
    if (cmd.on) {
      if (board.state === "off") board.powerOn();
    } else await board.powerOff(Boolean(cmd.tear));
  } else if (cmd.op === "reset") {
    if (board.state !== "off") await board.restart(CAUSE.HARD_RESET, false);
  } else if (cmd.op === "clock") {
    if (!board.clock) throw new Error("the board is off");
    if (cmd.jump_ms !== undefined) board.clock.jumpMs(Number(cmd.jump_ms));
    if (cmd.set_wall_ms !== undefined) board.clock.setWallMs(Number(cmd.set_wall_ms));
    if (cmd.speed !== undefined) board.clock.setSpeed(Number(cmd.speed));
  } else if (cmd.op === "stats") {
    // The RAM model's figures for this boot (live and peak are above the emulation's baseline).
    const st = board.statsShared ? new Int32Array(board.statsShared) : null;
    const result = st
      ? { live: Atomics.load(st, STAT.live), peak: Atomics.load(st, STAT.peak), steps: Atomics.load(st, STAT.steps), over: Atomics.load(st, STAT.over), ram: board.ram }
      : null;
    emit({ ev: "reply", id: cmd.id, req: cmd.req, result });
  } else if (cmd.op === "control") {
    if (!board.worker) emit({ ev: "reply", id: cmd.id, req: cmd.req, error: "the board is not running" });
    else board.worker.postMessage({ t: "control", req: cmd.req, plugin: cmd.plugin, msg: cmd.msg });
  } else if (cmd.op === "stop") {
    await board.halt("off");
    boards.delete(cmd.id);
  } else throw new Error(`unknown op ${cmd.op}`);
}

const rl = readline.createInterface({ input: process.stdin });
let chain = Promise.resolve();
rl.on("line", (line) => {
  if (!line.trim()) return;
  chain = chain.then(async () => {
    try {
      await handle(JSON.parse(line));
    } catch (e) {
      emit({ ev: "error", text: String(e && e.message ? e.message : e) });
    }
  });
});
rl.on("close", () => process.exit(0));
setInterval(() => {
  const now = Date.now();
  for (const b of boards.values()) b.check(now);
}, 20);
