// One emulated Raspberry Pi Pico (rp2040js) running a MicroPython UF2, wired as a pinseal board profile says.
//
//   node hil_tests/rp2040/board.mjs --uf2 FILE --bootrom FILE --board boards/pico/board.json --flash FILE
//       --cdc-fd N --uart-fd M [--sensors SCRIPT.json]
//
// - USB CDC (the REPL) <-> the stream socket on fd N; UART<profile.uart.id> <-> fd M (the serial transport's
//   binary frames: never on the REPL's line, where a 0x03 byte would interrupt the board). The launcher
//   (hil_tests/pinseal_rp2040) puts a pty on each.
// - The profile's BME280 / SHT3x at register level on its I2C bus and pins (i2c_devices.mjs), with the same
//   sensors script and models as the virtual board (hil_tests/vboard/sensors.mjs).
// - Flash: a host file, written through on every erase/program (flash_store.mjs); the UF2 is written over it
//   at start, so a new image keeps the filesystem.
// - Host -> device bytes on USB CDC are moved into rp2040js's 512-byte CDC FIFO only while it has room (rp2040js
//   drops bytes pushed into a full FIFO); the device drains it as TinyUSB arms its OUT endpoint.
// - UART input is fed at the UART's baud rate in simulated time, and only while its 32-byte RX FIFO has room.
//
// stdout: one JSON object a line ({"ev": "ready" | "stats" | "log" | "exit", ...}); stdin: one command a line
// ({"op": "sensors", "msg": {...}} | {"op": "stats"} | {"op": "stop"}). SIGTERM = stop (flash is always
// current); SIGKILL = a power cut.
import fs from "node:fs";
import net from "node:net";
import readline from "node:readline";
import { parseArgs } from "node:util";
import { ConsoleLogger, LogLevel, Simulator, USBCDC } from "rp2040js";
import { createSensors, readScript } from "../vboard/sensors.mjs";
import { attachI2CDevices } from "./i2c_devices.mjs";
import { FlashStore } from "./flash_store.mjs";

const FLASH_START = 0x10000000;
const UF2_MAGIC = [0x0a324655, 0x9e5d5157];
const UF2_MAGIC_END = 0x0ab16f30;
const CPU_HZ = 125e6;
const SLICE_INSTRUCTIONS = 200_000; // between host I/O turns: ~1.6 ms of Pico time
const CDC_FIFO_BYTES = 512;
const GPIO_FUNC_UART = 2;

const { values } = parseArgs({
  options: {
    uf2: { type: "string" },
    bootrom: { type: "string" },
    board: { type: "string" },
    flash: { type: "string" },
    sensors: { type: "string" },
    "cdc-fd": { type: "string" },
    "uart-fd": { type: "string" },
  },
});

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

function loadBootrom(path) {
  const bytes = fs.readFileSync(path);
  return new Uint32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
}

function loadUF2(path, store) {
  const data = fs.readFileSync(path);
  let blocks = 0;
  for (let off = 0; off + 512 <= data.length; off += 512) {
    const view = new DataView(data.buffer, data.byteOffset + off, 512);
    if (
      view.getUint32(0, true) !== UF2_MAGIC[0] ||
      view.getUint32(4, true) !== UF2_MAGIC[1] ||
      view.getUint32(508, true) !== UF2_MAGIC_END
    ) {
      throw new Error(`${path}: block ${off / 512} is not a UF2 block`);
    }
    const target = view.getUint32(12, true);
    const size = view.getUint32(16, true);
    store.writeImage(target - FLASH_START, data.subarray(off + 32, off + 32 + size));
    blocks += 1;
  }
  return blocks;
}

const board = JSON.parse(fs.readFileSync(values.board, "utf8"));
const simulator = new Simulator(); // for its clock and chip; the run loop is ours (host I/O between slices)
const { clock } = simulator;
const mcu = simulator.rp2040;
mcu.logger = new ConsoleLogger(LogLevel.Error);
mcu.loadBootrom(loadBootrom(values.bootrom));
const store = new FlashStore(mcu, values.flash);
store.hookBootrom((code) => emit({ ev: "log", text: `breakpoint ${code} at 0x${mcu.core.PC.toString(16)}` }));
const blocks = loadUF2(values.uf2, store);

// --- sensors on I2C -------------------------------------------------------------------------------------------
const nowMs = () => clock.nanos / 1e6;
const sensors = createSensors(board, readScript(values.sensors, board), nowMs);
attachI2CDevices(mcu, board.i2c, sensors.bus, board.port);

// --- USB CDC: the REPL ---------------------------------------------------------------------------------------
const cdcSocket = new net.Socket({ fd: Number(values["cdc-fd"]), readable: true, writable: true });
const cdcQueue = [];
let cdcQueued = 0;
let cdc = null;
function topUpCdc() {
  // Only into free FIFO room: rp2040js drops what is pushed into a full FIFO.
  while (cdc && cdcQueue.length && cdc.txFIFO.itemCount < CDC_FIFO_BYTES) {
    const chunk = cdcQueue[0];
    const room = CDC_FIFO_BYTES - cdc.txFIFO.itemCount;
    const n = Math.min(room, chunk.length);
    for (let i = 0; i < n; i++) cdc.sendSerialByte(chunk[i]);
    cdcQueued -= n;
    if (n === chunk.length) cdcQueue.shift();
    else cdcQueue[0] = chunk.subarray(n);
  }
  if (cdcQueued < 64 * 1024 && cdcSocket.isPaused()) cdcSocket.resume();
}
// The host's side of the USB link.
function connectUsbHost() {
  cdc = new USBCDC(mcu.usbCtrl);
  const endpointRead = mcu.usbCtrl.onEndpointRead;
  mcu.usbCtrl.onEndpointRead = (endpoint, size) => {
    topUpCdc(); // the device asks for data now: give it what is waiting, not what was there a slice ago
    endpointRead(endpoint, size);
  };
  cdc.onSerialData = (buffer) => cdcSocket.write(Buffer.from(buffer));
  cdc.onDeviceConnected = () => emit({ ev: "log", text: "usb cdc connected" });
}
connectUsbHost();
cdcSocket.on("data", (data) => {
  cdcQueue.push(new Uint8Array(data));
  cdcQueued += data.length;
  if (cdcQueued >= 64 * 1024) cdcSocket.pause();
});

// --- resets ----------------------------------------------------------------------------------------------------
// A watchdog reset (machine.WDT running out; machine.reset() is one too on rp2) is not modelled: rp2040js's
// RP2040.reset() erases the flash, and restarting only the core from boot2 left USB silent (SIO spinlocks and
// the USB controller keep their state). So the board stops, saying why, rather than hang unnoticed; the
// flash file is current, and starting the runner again is the next power-on.
const watchdog = mcu.peripherals[0x40058]; // rp2040js keeps it only in its address map
watchdog.onWatchdogTrigger = () => {
  // rp2040js's periodic alarm would fire again at once, inside the same clock tick: switch it off first.
  watchdog.alarm.enable = false;
  watchdog.timer.enable = false;
  if (stopped) return;
  emit({ ev: "log", text: "watchdog reset: not modelled, the board stops (start it again: a power-on)" });
  stop("watchdog reset");
};

// --- UART: the serial transport --------------------------------------------------------------------------------
const uart = mcu.uart[board.uart.id];
const uartSocket = new net.Socket({ fd: Number(values["uart-fd"]), readable: true, writable: true });
const uartWired = () =>
  [board.uart.tx, board.uart.rx].every((pin) => mcu.gpio[pin].functionSelect === GPIO_FUNC_UART);
const uartQueue = [];
// rp2040js raises the UART's TX interrupt again the moment it is cleared (its TX FIFO is not modelled), and
// MicroPython's rp2 UART enables that interrupt: the core would spend all its time in the handler (the
// firmware stopped at its first UART(0) and never fed the watchdog). On the chip the TX interrupt is raised
// when the TX FIFO drains to its trigger level and stays cleared after a write to UARTICR; here a byte leaves
// the moment it is written, so the interrupt is raised after each write to UARTDR, and only then.
const UART_TX_INTERRUPT = 1 << 5;
uart.checkInterrupts = () => mcu.setInterrupt(uart.irq, !!(uart.interruptStatus & uart.interruptMask));
uart.onByte = (value) => {
  if (uartWired()) uartSocket.write(Buffer.of(value));
  uart.interruptStatus |= UART_TX_INTERRUPT;
  uart.checkInterrupts();
};
const uartFeeder = clock.createAlarm(() => {
  const ready = uart.rxEnabled && uartWired();
  if (ready && !uart.rxFIFO.full) uart.feedByte(uartQueue.shift());
  // Not listening yet (UART off or pins elsewhere): look again in a millisecond; a byte stays queued, as in a
  // USB-UART adapter's buffer.
  if (uartQueue.length) uartFeeder.schedule(ready ? byteNanos() : 1e6);
});
function byteNanos() {
  const baud = uart.baudRate;
  // start + 8 data + stop bits; before the firmware set the divider the rate is not a number: 115200
  return (10 * 1e9) / (Number.isFinite(baud) && baud > 0 ? baud : 115200);
}
uartSocket.on("data", (data) => {
  const idle = uartQueue.length === 0;
  for (const byte of data) uartQueue.push(byte);
  if (idle) uartFeeder.schedule(byteNanos());
});

// --- control and the run loop --------------------------------------------------------------------------------
let stopped = false;
function stats() {
  return {
    ev: "stats",
    cycles: mcu.core.cycles,
    sim_s: clock.nanos / 1e9,
    host_s: process.uptime(),
    flash_erases: store.erases,
    flash_programs: store.programs,
  };
}
function stop(reason) {
  if (stopped) return;
  stopped = true;
  store.close();
  emit({ ...stats(), ev: "exit", reason });
  // Let the sockets flush what the board printed last, then go.
  cdcSocket.end();
  uartSocket.end();
  setTimeout(() => process.exit(0), 50);
}
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
    if (cmd.op === "sensors") emit({ ev: "reply", req: cmd.req, result: sensors.control(cmd.msg) });
    else if (cmd.op === "stats") emit({ ...stats(), req: cmd.req });
    else if (cmd.op === "stop") stop("stop");
    else throw new Error(`unknown op ${JSON.stringify(cmd.op)}`);
  } catch (e) {
    emit({ ev: "reply", req: cmd && cmd.req, error: String(e.message || e) });
  }
});
process.stdin.on("end", () => stop("stdin closed"));
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));

const cycleNanos = 1e9 / CPU_HZ;
function run() {
  if (stopped) return;
  topUpCdc();
  for (let i = 0; i < SLICE_INSTRUCTIONS && !stopped; i++) {
    if (mcu.core.waiting) {
      // Asleep (WFI): skip to the next timer; with none pending, let a millisecond pass (host input may come)
      const next = clock.nanosToNextAlarm;
      const wait = Number.isFinite(next) ? next : 1e6;
      clock.tick(wait);
      i += wait / cycleNanos;
    } else {
      clock.tick(mcu.core.executeInstruction() * cycleNanos);
    }
  }
  setImmediate(run);
}

emit({ ev: "ready", blocks, flash: values.flash, board: board.id });
mcu.core.PC = FLASH_START;
run();
