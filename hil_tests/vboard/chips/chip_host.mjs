// A small host for Wokwi custom chips (the Chips API, C compiled to WebAssembly): it instantiates a chip's .wasm
// with the API's imports implemented, keeps its attributes, timers and pins, and drives its I2C device callbacks
// as a controller would. The same .wasm runs in Wokwi (diagram.json + wokwi.toml [[chip]]) and here, so the
// virtual board and the rp2040js board test the one model of each sensor chip that Wokwi runs.
//
// What a chip imports (module "env"; see hil_tests/chips/include/pinseal_chip_api.h): memory, pinInit, pinMode,
// pinWrite, pinRead, attrInit, attrInitFloat, attrRead, attrReadFloat, timerInit, timerStart, timerStartNanos,
// timerStop, getSimNanos, i2cInit; and from WASI (printf through wasi-libc) fd_write, fd_seek, fd_close,
// fd_fdstat_get. It exports chipInit, its function table (callbacks are table indices) and
// __wokwi_api_version_1.
//
// Time is the caller's: nowNs() is the simulated time. The host is lazy, driven by the controller: before each
// I2C transfer it runs the chip timers that fell due since, each at ITS due time (getSimNanos and attribute
// values are those of that moment), so a forced conversion ends when the datasheet says, not when read.
// Attributes are numbers or functions of the simulated time in ms (a sensors script's values over time).
import fs from "node:fs";

const PAGE = 65536;
const OUTPUT_LOW = 16;
const OUTPUT = 1;
const WASI_EBADF = 8;
const WASI_ESPIPE = 70;

const modules = new Map(); // path -> WebAssembly.Module (compiled once per process)

export class ChipError extends Error {}

function loadModule(path) {
  let mod = modules.get(path);
  if (mod) return mod;
  let bytes;
  try {
    bytes = fs.readFileSync(path);
  } catch (e) {
    throw new ChipError(`chip ${path}: cannot read it (${e.code || e.message}); build the chips with \`make wokwi-chips\``);
  }
  mod = { module: new WebAssembly.Module(bytes), minPages: importedMemoryMinPages(bytes) };
  modules.set(path, mod);
  return mod;
}

// The imported memory's minimum size, from the module's import section (the JS API does not expose it).
export function importedMemoryMinPages(bytes) {
  let pos = 8;
  const leb = () => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[pos++];
      result += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (!(b & 0x80)) return result;
    }
  };
  const name = () => {
    const n = leb();
    pos += n;
  };
  const limits = () => {
    const flags = bytes[pos++];
    const min = leb();
    if (flags & 1) leb();
    return min;
  };
  while (pos < bytes.length) {
    const id = bytes[pos++];
    const size = leb();
    const end = pos + size;
    if (id === 2) {
      for (let count = leb(); count > 0; count--) {
        name();
        name();
        const kind = bytes[pos++];
        if (kind === 0) leb();
        else if (kind === 1) {
          pos++;
          limits();
        } else if (kind === 2) return limits();
        else pos += 2; // global: valtype, mutability
      }
    }
    pos = end;
  }
  return 0;
}

export class ChipHost {
  // wasm: path of the .wasm; attrs: {name: number | (ms) => number}, overriding the chip's defaults;
  // nowNs: () => simulated time in ns (a number); log: (line) => void for the chip's printf output.
  constructor({ wasm, attrs = {}, nowNs, log = () => {} }) {
    this.path = wasm;
    this.nowNs = nowNs;
    this.log = log;
    this.overrides = { ...attrs };
    this.attrs = []; // [{name, def, float}]
    this.pins = []; // [{name, mode, value}]
    this.timers = []; // [{userData, callback, due: ns | null, period: ns | null}]
    this.devices = []; // I2C device configs
    this.evalNs = null; // the moment the chip is being run at (a timer's due time, or now)
    this.stdout = "";
    const { module, minPages } = loadModule(wasm);
    this.memory = new WebAssembly.Memory({ initial: Math.max(minPages, 1) });
    this.instance = new WebAssembly.Instance(module, this._imports(module));
    this.table = this.instance.exports.__indirect_function_table;
    if (!this.table) throw new ChipError(`chip ${wasm}: no exported function table (link with --export-table)`);
    if (this.instance.exports._initialize) this.instance.exports._initialize();
    if (this.instance.exports.__wokwi_api_version_1?.() !== 1) {
      throw new ChipError(`chip ${wasm}: does not declare Chips API version 1`);
    }
    this._at(this._now(), () => this.instance.exports.chipInit());
  }

  get exports() {
    return this.instance.exports;
  }

  setAttr(name, value) {
    this.overrides[name] = value;
  }

  // --- the API's imports -----------------------------------------------------------------------------------
  _imports(module) {
    const env = {
      memory: this.memory,
      pinInit: (namePtr, mode) => this.pins.push({ name: this._str(namePtr), mode, value: 0 }) - 1,
      pinMode: (pin, mode) => {
        this._pin(pin).mode = mode;
      },
      pinWrite: (pin, value) => {
        this._pin(pin).value = value;
      },
      pinRead: (pin) => this._pin(pin).value,
      attrInit: (namePtr, def) => this.attrs.push({ name: this._str(namePtr), def, float: false }) - 1,
      attrInitFloat: (namePtr, def) => this.attrs.push({ name: this._str(namePtr), def, float: true }) - 1,
      attrRead: (id) => this._attr(id) >>> 0,
      attrReadFloat: (id) => this._attr(id),
      timerInit: (cfg) => {
        const v = new DataView(this.memory.buffer);
        return this.timers.push({ userData: v.getUint32(cfg, true), callback: v.getUint32(cfg + 4, true), due: null }) - 1;
      },
      timerStart: (id, micros, repeat) => this._startTimer(id, (micros >>> 0) * 1000, repeat),
      timerStartNanos: (id, nanos, repeat) => this._startTimer(id, Number(nanos), repeat),
      timerStop: (id) => {
        this._timer(id).due = null;
      },
      getSimNanos: () => BigInt(Math.round(this.evalNs ?? this._now())),
      i2cInit: (cfg) => {
        const v = new DataView(this.memory.buffer);
        const u32 = (off) => v.getUint32(cfg + off, true);
        const dev = {
          userData: u32(0), address: u32(4), scl: v.getInt32(cfg + 8, true), sda: v.getInt32(cfg + 12, true),
          connect: u32(16), read: u32(20), write: u32(24), disconnect: u32(28),
        };
        return this.devices.push(dev) - 1;
      },
    };
    const wasi = {
      fd_write: (fd, iovs, count, nwritten) => {
        const v = new DataView(this.memory.buffer);
        let total = 0;
        for (let i = 0; i < count; i++) {
          const ptr = v.getUint32(iovs + 8 * i, true);
          const len = v.getUint32(iovs + 8 * i + 4, true);
          if (fd === 1 || fd === 2) this._print(Buffer.from(this.memory.buffer, ptr, len).toString("utf8"));
          total += len;
        }
        v.setUint32(nwritten, total, true);
        return fd === 1 || fd === 2 ? 0 : WASI_EBADF;
      },
      fd_fdstat_get: (fd, out) => {
        if (fd !== 1 && fd !== 2) return WASI_EBADF;
        new Uint8Array(this.memory.buffer, out, 24).fill(0);
        new DataView(this.memory.buffer).setUint8(out, 2); // a character device: line-buffered stdout
        return 0;
      },
      fd_seek: () => WASI_ESPIPE,
      fd_close: () => 0,
    };
    const provided = { env, wasi_snapshot_preview1: wasi };
    for (const imp of WebAssembly.Module.imports(module)) {
      if (!provided[imp.module] || !(imp.name in provided[imp.module])) {
        throw new ChipError(`chip ${this.path}: imports ${imp.module}.${imp.name}, which this host does not provide`);
      }
    }
    return provided;
  }

  _now() {
    return this.nowNs();
  }

  _str(ptr) {
    const bytes = new Uint8Array(this.memory.buffer);
    let end = ptr;
    while (bytes[end]) end++;
    return Buffer.from(bytes.subarray(ptr, end)).toString("utf8");
  }

  _pin(id) {
    const pin = this.pins[id];
    if (!pin) throw new ChipError(`chip ${this.path}: no pin ${id}`);
    return pin;
  }

  _timer(id) {
    const timer = this.timers[id];
    if (!timer) throw new ChipError(`chip ${this.path}: no timer ${id}`);
    return timer;
  }

  _attr(id) {
    const attr = this.attrs[id];
    if (!attr) throw new ChipError(`chip ${this.path}: no attribute ${id}`);
    const value = attr.name in this.overrides ? this.overrides[attr.name] : attr.def;
    const v = typeof value === "function" ? value((this.evalNs ?? this._now()) / 1e6) : value;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new ChipError(`chip ${this.path}: attribute ${attr.name} is not a number (${v})`);
    }
    return attr.float ? v : Math.round(v);
  }

  _startTimer(id, ns, repeat) {
    const timer = this._timer(id);
    timer.due = (this.evalNs ?? this._now()) + ns;
    timer.period = repeat ? Math.max(ns, 1) : null;
  }

  _print(text) {
    this.stdout += text;
    let nl;
    while ((nl = this.stdout.indexOf("\n")) >= 0) {
      this.log(this.stdout.slice(0, nl));
      this.stdout = this.stdout.slice(nl + 1);
    }
  }

  _at(ns, fn) {
    const outer = this.evalNs;
    this.evalNs = ns;
    try {
      return fn();
    } finally {
      this.evalNs = outer;
    }
  }

  _call(index, ...args) {
    const fn = this.table.get(index);
    if (!fn) throw new ChipError(`chip ${this.path}: callback ${index} is not in its table`);
    return fn(...args);
  }

  // Run the timers that fell due up to now, in order, each at its own due time.
  advance(limit = 100000) {
    const now = this._now();
    for (let n = 0; ; n++) {
      let next = null;
      for (const t of this.timers) if (t.due !== null && t.due <= now && (!next || t.due < next.due)) next = t;
      if (!next) return;
      if (n >= limit) throw new ChipError(`chip ${this.path}: more than ${limit} timer callbacks in one step`);
      const due = next.due;
      next.due = next.period ? due + next.period : null;
      this._at(due, () => this._call(next.callback, next.userData));
    }
  }

  // --- the controller's side of the I2C device ------------------------------------------------------------
  device(address) {
    const dev = this.devices.find((d) => d.address === address || d.address === 0);
    if (!dev) throw new ChipError(`chip ${this.path}: no I2C device at 0x${address.toString(16)}`);
    return dev;
  }

  // True while one of the chip's SDA pins pulls the line low (a stuck bus).
  holdsSdaLow() {
    return this.devices.some((d) => {
      const pin = this.pins[d.sda];
      return pin && (pin.mode === OUTPUT_LOW || (pin.mode === OUTPUT && !pin.value));
    });
  }

  // One addressed phase: START (or repeated START) + address; false when the chip does not acknowledge.
  connect(address, read) {
    this.advance();
    const dev = this.device(address);
    return this._at(this._now(), () => (dev.connect ? !!this._call(dev.connect, dev.userData, address, read) : true));
  }

  writeByte(address, byte) {
    const dev = this.device(address);
    return this._at(this._now(), () => (dev.write ? !!this._call(dev.write, dev.userData, byte) : true));
  }

  readByte(address) {
    const dev = this.device(address);
    return this._at(this._now(), () => (dev.read ? this._call(dev.read, dev.userData) & 0xff : 0xff));
  }

  disconnect(address) {
    const dev = this.device(address);
    this._at(this._now(), () => dev.disconnect && this._call(dev.disconnect, dev.userData));
  }
}

// The device interface i2c_bus.mjs expects (write(bytes) -> acknowledged?, read(n) -> bytes | null), over a
// chip's I2C callbacks: each call is one transfer, START .. STOP.
export class I2CChipDevice {
  constructor(host, address) {
    this.host = host;
    this.address = address;
  }

  // A write transfer's data bytes; false when the address or a byte is not acknowledged (the controller stops
  // at the first NACK).
  write(bytes) {
    const { host, address } = this;
    if (!host.connect(address, false)) return false;
    try {
      for (const b of bytes) if (!host.writeByte(address, b)) return false;
      return true;
    } finally {
      host.disconnect(address);
    }
  }

  // A read transfer of n bytes, or null when the chip does not acknowledge its address for reading.
  read(n) {
    const { host, address } = this;
    if (!host.connect(address, true)) {
      host.disconnect(address);
      return null;
    }
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = host.readByte(address);
    host.disconnect(address);
    return out;
  }

  holdsSdaLow() {
    return this.host.holdsSdaLow();
  }
}
