// Boot a MicroPython UF2 in rp2040js (the RP2040 simulator Wokwi runs) and talk to its REPL over USB CDC.
//
//   node hil_tests/rp2040/boot_uf2.mjs --uf2 FILE --bootrom FILE [--send CODE] --expect TEXT [--timeout-s N]
//
// Prints everything the board writes to USB CDC on stdout; exits 0 once TEXT has appeared (after CODE, if
// given, was typed at the prompt), 1 on timeout. The UF2's 512-byte blocks are written into the flash at their
// address - 0x10000000 and the core starts at the flash's first instruction (boot2), as rp2040js's own demo
// does; the bootrom (the RP2040's mask ROM, not in rp2040js's npm package) supplies the ROM routines
// MicroPython calls (flash access, fast memcpy, soft float tables).
// Host->device bytes go into rp2040js's 512-byte CDC FIFO only while it has room (it drops the rest).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Simulator, USBCDC, ConsoleLogger, LogLevel } from 'rp2040js';

const FLASH_START = 0x10000000;
const UF2_MAGIC = [0x0a324655, 0x9e5d5157];
const UF2_MAGIC_END = 0x0ab16f30;

const { values } = parseArgs({
  options: {
    uf2: { type: 'string' },
    bootrom: { type: 'string' },
    send: { type: 'string' },
    expect: { type: 'string' },
    'timeout-s': { type: 'string', default: '120' },
  },
});

function loadUF2(path, mcu) {
  const data = readFileSync(path);
  let blocks = 0;
  for (let off = 0; off + 512 <= data.length; off += 512) {
    const view = new DataView(data.buffer, data.byteOffset + off, 512);
    const magicOk =
      view.getUint32(0, true) === UF2_MAGIC[0] &&
      view.getUint32(4, true) === UF2_MAGIC[1] &&
      view.getUint32(508, true) === UF2_MAGIC_END;
    if (!magicOk) throw new Error(`${path}: block ${off / 512} is not a UF2 block`);
    const target = view.getUint32(12, true);
    const size = view.getUint32(16, true);
    mcu.flash.set(data.subarray(off + 32, off + 32 + size), target - FLASH_START);
    blocks += 1;
  }
  return blocks;
}

function loadBootrom(path) {
  const bytes = readFileSync(path);
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
}

const simulator = new Simulator();
const mcu = simulator.rp2040;
mcu.loadBootrom(loadBootrom(values.bootrom));
mcu.logger = new ConsoleLogger(LogLevel.Error);
const blocks = loadUF2(values.uf2, mcu);
process.stderr.write(`rp2040js: ${blocks} UF2 blocks loaded\n`);

const cdc = new USBCDC(mcu.usbCtrl);
let output = '';
let sent = values.send === undefined;
const queue = [];

function pump() {
  // Into the CDC FIFO only while it has room: rp2040js drops bytes pushed into a full one (512 bytes). The
  // device drains it as TinyUSB arms its OUT endpoint; look again in a millisecond while bytes wait.
  while (queue.length && cdc.txFIFO.itemCount < cdc.txFIFO.size) cdc.sendSerialByte(queue.shift());
  if (queue.length) setTimeout(pump, 1);
}

function type(text) {
  for (const byte of Buffer.from(text)) queue.push(byte);
  pump();
}

cdc.onDeviceConnected = () => {
  type('\r\n');
};

cdc.onSerialData = (value) => {
  const text = Buffer.from(value).toString('latin1');
  process.stdout.write(text);
  output += text;
  if (!sent && output.includes('>>> ')) {
    sent = true;
    output = '';
    type(values.send + '\r\n');
    return;
  }
  if (sent && values.expect && output.includes(values.expect)) {
    process.stderr.write(`\nrp2040js: expected text seen after ${(mcu.core.cycles / 125e6).toFixed(2)} s of RP2040 time\n`);
    process.exit(0);
  }
};

setTimeout(() => {
  process.stderr.write(`\nrp2040js: no ${JSON.stringify(values.expect)} within ${values['timeout-s']} s\n`);
  process.exit(1);
}, Number(values['timeout-s']) * 1000);

mcu.core.PC = FLASH_START;
simulator.execute();
