// Plugin: the board's sensors at register level on an emulated I2C bus, and its battery on an ADC pin.
//
//   node run_vm.mjs --board boards/<id>/board.json --plugin hil_tests/vboard/sensors.mjs[=SCRIPT.json] ...
//
// Which chips exist, at which addresses, on which pins, comes from the board profile (ctx.board: i2c, sensors,
// battery). The BME280 and SHT3x are the Wokwi custom chips (hil_tests/chips/, build/chips/*.chip.wasm) in the
// Node Chips-API host (chips/wasm_chips.mjs); what they measure and how they fail comes from the sensors script (docs/virtual-board.md,
// "Sensors"). Registers the JS modules `vboard_i2c` and `vboard_adc` that the MicroPython shims
// hil_tests/vboard/mpy/_vb_i2c.py and _vb_adc.py (machine.I2C, machine.SoftI2C, machine.ADC) call; bytes cross
// the JS boundary as hex strings. Control while the board runs: {"set": {...same shape as the script...}},
// {"get": true} (values and active faults now).
//
// Also a checker for scripts: `node sensors.mjs --check BOARD_JSON SCRIPT.json` (exit 1 with the problem), and
// `--check-lines BOARD_JSON`: one JSON text per stdin line, one {"ok": true} / {"error": "..."} line back.
import fs from "node:fs";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { batteryReading } from "./chips/adc.mjs";
import { I2CBus, I2CError } from "./chips/i2c_bus.mjs";
import { BME280, SHT3x } from "./chips/wasm_chips.mjs";

export class ScriptError extends Error {}

// Physical ranges the chips measure (datasheets: BME280 operating range; SHT3x-DIS): a script outside them is a
// mistake, not a fault to emulate (faults have their own keys).
export const QUANTITIES = {
  bme280: { t: [-40, 85, 20], p: [30000, 110000, 101325], h: [0, 100, 50] },
  sht3x: { t: [-40, 125, 20], h: [0, 100, 50] },
  battery: { mv: [0, 6000, 3900] },
};
export const FAULT_KINDS = { bme280: ["nack", "stuck", "missing"], sht3x: ["nack", "stuck", "crc", "missing"], battery: [] };
const SENSOR_KEYS = { bme280: ["t", "p", "h", "faults"], sht3x: ["t", "h", "faults"], battery: ["mv"] };

const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// A value spec -> function of board uptime (s). Specs: a number; [[t_s, v], ...] (piecewise linear, held
// constant before the first and after the last point); {"base", "amplitude", "period_s", "phase_s"} (a sine),
// with "noise" (plus or minus, wandering every "noise_step_s", from "seed") for a plausible daily curve.
export function parseValue(spec, [lo, hi], where) {
  const inRange = (v, what) => {
    if (!isNum(v)) throw new ScriptError(`${where}${what}: expected a number, got ${JSON.stringify(v)}`);
    if (v < lo || v > hi) throw new ScriptError(`${where}${what}: ${v} is outside the chip's range ${lo}..${hi}`);
    return v;
  };
  if (typeof spec === "number") {
    const v = inRange(spec, "");
    return () => v;
  }
  if (Array.isArray(spec)) {
    if (!spec.length) throw new ScriptError(`${where}: a list of points [[t_s, value], ...] needs at least one point`);
    const pts = spec.map((p, i) => {
      if (!Array.isArray(p) || p.length !== 2) throw new ScriptError(`${where}[${i}]: a point is [t_s, value]`);
      if (!isNum(p[0]) || p[0] < 0) throw new ScriptError(`${where}[${i}][0]: t_s must be a number >= 0, got ${JSON.stringify(p[0])}`);
      if (i && p[0] <= spec[i - 1][0]) throw new ScriptError(`${where}[${i}][0]: times must increase (${p[0]} after ${spec[i - 1][0]})`);
      return [p[0], inRange(p[1], `[${i}][1]`)];
    });
    return (s) => {
      if (s <= pts[0][0]) return pts[0][1];
      for (let i = 1; i < pts.length; i++) {
        if (s <= pts[i][0]) {
          const [t0, v0] = pts[i - 1];
          const [t1, v1] = pts[i];
          return v0 + ((v1 - v0) * (s - t0)) / (t1 - t0);
        }
      }
      return pts[pts.length - 1][1];
    };
  }
  if (isObj(spec)) {
    const keys = ["base", "amplitude", "period_s", "phase_s", "noise", "noise_step_s", "seed"];
    for (const k of Object.keys(spec)) {
      if (!keys.includes(k)) throw new ScriptError(`${where}.${k}: unknown key (${keys.join(", ")})`);
    }
    const base = inRange(spec.base, ".base");
    const amplitude = spec.amplitude ?? 0;
    if (!isNum(amplitude) || amplitude < 0) throw new ScriptError(`${where}.amplitude: must be a number >= 0, got ${JSON.stringify(spec.amplitude)}`);
    const noise = spec.noise ?? 0;
    if (!isNum(noise) || noise < 0) throw new ScriptError(`${where}.noise: must be a number >= 0, got ${JSON.stringify(spec.noise)}`);
    inRange(base - amplitude - noise, " (base - amplitude - noise)");
    inRange(base + amplitude + noise, " (base + amplitude + noise)");
    const period = spec.period_s;
    if (!isNum(period) || period <= 0) throw new ScriptError(`${where}.period_s: must be a number > 0, got ${JSON.stringify(period)}`);
    const phase = spec.phase_s ?? 0;
    if (!isNum(phase)) throw new ScriptError(`${where}.phase_s: must be a number, got ${JSON.stringify(phase)}`);
    const step = spec.noise_step_s ?? 300;
    if (!isNum(step) || step <= 0) throw new ScriptError(`${where}.noise_step_s: must be a number > 0, got ${JSON.stringify(spec.noise_step_s)}`);
    const seed = spec.seed ?? 0;
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new ScriptError(`${where}.seed: must be an integer 0..4294967295, got ${JSON.stringify(spec.seed)}`);
    const wander = noise ? smoothNoise(seed, step) : () => 0;
    return (s) => base + amplitude * Math.sin((2 * Math.PI * (s + phase)) / period) + noise * wander(s);
  }
  throw new ScriptError(`${where}: expected a number, a list of [t_s, value] points or {"base", "amplitude", "period_s"}, got ${JSON.stringify(spec)}`);
}

// Seeded noise in -1..1 that wanders smoothly: a value per `step` seconds from the seed (mulberry32 of the step
// index), eased between them, so a plot of it looks like weather rather than static, and the same seed gives the
// same curve on every run.
export function smoothNoise(seed, step) {
  const at = (k) => {
    let x = (seed ^ Math.imul(k | 0, 0x9e3779b1)) >>> 0;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return (((x ^ (x >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
  return (s) => {
    const k = Math.floor(s / step);
    const f = s / step - k;
    const e = f * f * (3 - 2 * f);
    return at(k) + (at(k + 1) - at(k)) * e;
  };
}

// "kind" or {"kind", "from_s", "until_s"} -> {kind, from, until}
export function parseFaults(spec, kinds, where) {
  if (!Array.isArray(spec)) throw new ScriptError(`${where}: expected a list of faults, got ${JSON.stringify(spec)}`);
  return spec.map((f, i) => {
    const w = `${where}[${i}]`;
    const obj = typeof f === "string" ? { kind: f } : f;
    if (!isObj(obj)) throw new ScriptError(`${w}: a fault is "kind" or {"kind", "from_s", "until_s"}`);
    for (const k of Object.keys(obj)) if (!["kind", "from_s", "until_s"].includes(k)) throw new ScriptError(`${w}.${k}: unknown key (kind, from_s, until_s)`);
    if (!kinds.includes(obj.kind)) throw new ScriptError(`${w}.kind: ${JSON.stringify(obj.kind)} is not one of ${kinds.join(", ")}`);
    const from = obj.from_s ?? 0;
    const until = obj.until_s ?? Infinity;
    if (!isNum(from) || from < 0) throw new ScriptError(`${w}.from_s: must be a number >= 0, got ${JSON.stringify(obj.from_s)}`);
    if (obj.until_s !== undefined && (!isNum(until) || until <= from)) throw new ScriptError(`${w}.until_s: must be a number > from_s (${from}), got ${JSON.stringify(obj.until_s)}`);
    return { kind: obj.kind, from, until };
  });
}

// Validate one sensor's (partial) spec; returns {key: parsed} for the keys given.
function parseSensor(type, spec, where) {
  if (!isObj(spec)) throw new ScriptError(`${where}: expected an object, got ${JSON.stringify(spec)}`);
  const out = {};
  for (const [k, v] of Object.entries(spec)) {
    if (!SENSOR_KEYS[type].includes(k)) throw new ScriptError(`${where}.${k}: unknown key for ${type} (${SENSOR_KEYS[type].join(", ")})`);
    out[k] = k === "faults" ? parseFaults(v, FAULT_KINDS[type], `${where}.faults`) : { spec: v, at: parseValue(v, QUANTITIES[type][k], `${where}.${k}`) };
  }
  return out;
}

// A whole script (or a control's "set"): {bme280?, sht3x?, battery?}, checked against the board's wiring.
export function parseScript(script, board, where = "sensors script") {
  if (!isObj(script)) throw new ScriptError(`${where}: expected a JSON object, got ${JSON.stringify(script)}`);
  const wired = new Set((board.sensors || []).map((s) => s.type));
  if (board.battery) wired.add("battery");
  const out = {};
  for (const [type, spec] of Object.entries(script)) {
    if (!(type in SENSOR_KEYS)) throw new ScriptError(`${where}.${type}: unknown sensor (bme280, sht3x, battery)`);
    if (!wired.has(type)) throw new ScriptError(`${where}.${type}: board ${board.id} has no ${type} (see its board.json)`);
    out[type] = parseSensor(type, spec, `${where}.${type}`);
  }
  return out;
}

export function readScript(file, board) {
  if (!file) return {};
  let text;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new ScriptError(`sensors script ${file}: cannot read it (${e.code || e.message})`);
  }
  let json;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ScriptError(`sensors script ${file}: not JSON (${e.message})`);
  }
  return parseScript(json, board, `sensors script ${file}`);
}

// The board's sensors: state (values and faults, changeable at run time), the bus and the ADC.
export function createSensors(board, script, nowMs) {
  if (!board) throw new ScriptError("sensors plugin: needs a board profile (--board boards/<id>/board.json)");
  const state = {};
  const defaults = (type) => {
    const s = {};
    for (const [k, [, , d]] of Object.entries(QUANTITIES[type])) s[k] = { spec: d, at: () => d };
    if (FAULT_KINDS[type].length) s.faults = [];
    return s;
  };
  for (const s of board.sensors || []) state[s.type] = defaults(s.type);
  if (board.battery) state.battery = defaults("battery");
  const apply = (parsed) => {
    for (const [type, fields] of Object.entries(parsed)) Object.assign(state[type], fields);
  };
  apply(script);
  const nowS = () => nowMs() / 1000;
  const activeFaults = (type) => {
    const s = nowS();
    return (state[type].faults || []).filter((f) => s >= f.from && s < f.until).map((f) => f.kind);
  };
  const typeAt = new Map((board.sensors || []).map((s) => [s.address, s.type]));
  const faultAt = (address) => {
    const type = typeAt.get(address);
    if (!type) return null;
    const active = activeFaults(type);
    for (const kind of ["stuck", "missing", "nack", "crc"]) if (active.includes(kind)) return kind;
    return null;
  };
  const valuesOf = (type) => (ms) => {
    const out = {};
    for (const k of Object.keys(QUANTITIES[type])) out[k] = state[type][k].at(ms / 1000);
    return out;
  };
  const bus = new I2CBus({ faultAt });
  for (const s of board.sensors || []) {
    const opts = { address: s.address, values: valuesOf(s.type), nowMs, fault: () => faultAt(s.address) };
    if (s.type === "bme280") bus.attach(s.address, new BME280(opts));
    else if (s.type === "sht3x") bus.attach(s.address, new SHT3x(opts));
    else throw new ScriptError(`board ${board.id}: unknown sensor type ${s.type}`);
  }
  const control = (msg) => {
    if (!isObj(msg)) throw new ScriptError(`sensors control: expected {"set": {...}} or {"get": true}, got ${JSON.stringify(msg)}`);
    if ("set" in msg) {
      apply(parseScript(msg.set, board, "sensors control set"));
      return { ok: true };
    }
    if ("get" in msg) {
      const out = { uptime_s: nowS() };
      for (const type of Object.keys(state)) {
        out[type] = valuesOf(type)(nowMs());
        if (state[type].faults) out[type].faults = activeFaults(type);
      }
      return out;
    }
    throw new ScriptError(`sensors control: unknown message ${JSON.stringify(msg)} (set, get)`);
  };
  const battery = () => {
    if (!board.battery) return null;
    const mv = state.battery.mv.at(nowS());
    return batteryReading(mv, board.battery.divider, board.battery.vref_mv);
  };
  return { bus, state, control, battery, faultAt };
}

// --- the plugin -------------------------------------------------------------------------------------------
export async function install(mp, ctx) {
  const board = ctx.board;
  const nowMs = () => ctx.clock.ticksMs();
  const sensors = createSensors(board, readScript(ctx.arg, board || {}), nowMs);
  const port = board.port;
  mp.registerJsModule("vboard_i2c", {
    config: () => JSON.stringify({ port, mcu: board.mcu, id: board.id, i2c: board.i2c }),
    scan: () => JSON.stringify(sensors.bus.scan()),
    // -> "ok:<hex read>" | "n:<bytes acknowledged>" (soft I2C write cut short by a NACK) | "err:<ERRNO NAME>"
    xfer: (address, hex, readLen, soft) => {
      try {
        const data = Uint8Array.from(Buffer.from(String(hex), "hex"));
        const out = sensors.bus.transfer(Number(address), data, Number(readLen), soft ? "soft" : port);
        if (typeof out === "number") return "n:" + out;
        return "ok:" + Buffer.from(out).toString("hex");
      } catch (e) {
        if (e instanceof I2CError) return "err:" + e.errno;
        throw e;
      }
    },
  });
  mp.registerJsModule("vboard_adc", {
    config: () =>
      JSON.stringify({ port, mcu: board.mcu, battery_pin: board.battery ? board.battery.adc_pin : null, battery: board.battery || null }),
    // -> [u16, uv] of the battery pin now, or [0, 0] for a pin nothing drives (the shim checks ADC capability)
    read: (pin) => {
      const r = board.battery && Number(pin) === board.battery.adc_pin ? sensors.battery() : null;
      return JSON.stringify(r ? [r.u16, r.uv] : [0, 0]);
    },
  });
  return { control: sensors.control };
}

// --- script checker (CLI) ---------------------------------------------------------------------------------
async function main(argv) {
  const [mode, boardFile, scriptFile] = argv;
  const board = JSON.parse(fs.readFileSync(boardFile, "utf8"));
  if (mode === "--check") {
    try {
      createSensors(board, readScript(scriptFile, board), () => 0);
      console.log("ok");
    } catch (e) {
      if (!(e instanceof ScriptError)) throw e;
      console.error(e.message);
      process.exitCode = 1;
    }
    return;
  }
  if (mode === "--check-lines") {
    for await (const line of readline.createInterface({ input: process.stdin })) {
      let reply;
      try {
        const json = JSON.parse(line);
        let parsed;
        try {
          parsed = JSON.parse(json);
        } catch (e) {
          throw new ScriptError(`sensors script: not JSON (${e.message})`);
        }
        createSensors(board, parseScript(parsed, board), () => 0);
        reply = { ok: true };
      } catch (e) {
        if (!(e instanceof ScriptError)) reply = { crash: String(e && e.stack) };
        else reply = { error: e.message };
      }
      process.stdout.write(JSON.stringify(reply) + "\n");
    }
    return;
  }
  console.error("usage: node sensors.mjs --check BOARD_JSON SCRIPT.json | --check-lines BOARD_JSON");
  process.exitCode = 2;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === fs.realpathSync(process.argv[1])) {
  await main(process.argv.slice(2));
}
