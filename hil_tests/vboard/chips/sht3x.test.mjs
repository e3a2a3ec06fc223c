// The SHT3x Wokwi chip (hil_tests/chips/sht3x/sht3x.chip.c, built by `make wokwi-chips`) in the Node Chips-API
// host: CRC, signal conversion, single shot timing, faults.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ChipHost } from "./chip_host.mjs";
import { SHT3x, chipWasm } from "./wasm_chips.mjs";

// CRC-8 as the datasheet defines it (polynomial 0x31, init 0xFF), independent of the chip's C.
function crc8(bytes) {
  let crc = 0xff;
  for (const b of bytes) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 0x80 ? ((crc << 1) ^ 0x31) & 0xff : (crc << 1) & 0xff;
  }
  return crc;
}

const lib = new ChipHost({ wasm: chipWasm("sht3x"), nowNs: () => 0 });
const rawFor = ({ t, h }) => ({ st: lib.exports.pinseal_sht3x_raw_t(t), srh: lib.exports.pinseal_sht3x_raw_h(h) });

test("CRC-8 of the datasheet example: 0xBEEF -> 0x92", () => {
  assert.equal(crc8([0xbe, 0xef]), 0x92);
  assert.equal(lib.exports.pinseal_sht3x_crc8(0xbe, 0xef), 0x92, "the chip's own CRC");
});

test("raw signals invert the datasheet's conversion within one count", () => {
  for (const t of [-40, -12.34, 0, 21.5, 125]) {
    for (const h of [0, 33.3, 100]) {
      const { st, srh } = rawFor({ t, h });
      assert.ok(Math.abs(-45 + (175 * st) / 65535 - t) <= 175 / 65535 / 2 + 1e-9);
      assert.ok(Math.abs((100 * srh) / 65535 - h) <= 100 / 65535 / 2 + 1e-9);
    }
  }
});

function chip(fault = null) {
  const now = { ms: 0 };
  const c = new SHT3x({ values: () => ({ t: 21.5, h: 45 }), nowMs: () => now.ms, fault: () => fault });
  return { c, now };
}

test("single shot without clock stretching: read NACKed until done, then 6 bytes with CRCs, then NACK", () => {
  const { c, now } = chip();
  assert.equal(c.read(6), null, "nothing measured yet");
  assert.equal(c.write(Uint8Array.of(0x24, 0x00)), true);
  now.ms = 14;
  assert.equal(c.read(6), null, "not ready at 14 ms");
  now.ms = 15;
  const d = c.read(6);
  assert.equal(crc8(d.slice(0, 2)), d[2]);
  assert.equal(crc8(d.slice(3, 5)), d[5]);
  const { st, srh } = rawFor({ t: 21.5, h: 45 });
  assert.equal((d[0] << 8) | d[1], st);
  assert.equal((d[3] << 8) | d[4], srh);
  assert.equal(c.read(6), null, "data is read once");
});

test("crc fault corrupts both CRC bytes; unknown command NACKed; status register", () => {
  const { c, now } = chip("crc");
  c.write(Uint8Array.of(0x24, 0x00));
  now.ms = 20;
  const d = c.read(6);
  assert.notEqual(crc8(d.slice(0, 2)), d[2]);
  assert.notEqual(crc8(d.slice(3, 5)), d[5]);
  assert.equal(c.write(Uint8Array.of(0x12, 0x34)), false);
  c.write(Uint8Array.of(0xf3, 0x2d));
  const s = c.read(3);
  assert.equal(crc8(s.slice(0, 2)), s[2]);
  assert.equal(s[1] & 0x02, 0x02, "last command not processed");
});

test("clock stretching answers at once; busy while measuring; soft reset NACKs commands for 1.5 ms", () => {
  const { c, now } = chip();
  assert.equal(c.write(Uint8Array.of(0x2c, 0x06)), true);
  assert.equal(c.write(Uint8Array.of(0x24, 0x00)), false, "busy measuring: NACK");
  assert.equal(c.read(6).length, 6, "clock stretching: answered before 15 ms");
  assert.equal(c.write(Uint8Array.of(0x30, 0xa2)), true);
  now.ms = 1;
  assert.equal(c.write(Uint8Array.of(0xf3, 0x2d)), false, "resetting");
  now.ms = 1.5;
  assert.equal(c.write(Uint8Array.of(0xf3, 0x2d)), true);
  const s = c.read(3);
  assert.equal(s[1] & 0x10, 0x10, "reset detected");
  assert.equal(c.write(Uint8Array.of(0x30, 0x41)), true, "clear status");
  c.write(Uint8Array.of(0xf3, 0x2d));
  assert.equal(c.read(3)[1] & 0x12, 0);
});

test("fault attribute: missing NACKs the address, stuck holds SDA low until it ends", () => {
  let fault = "missing";
  const now = { ms: 0 };
  const c = new SHT3x({ values: () => ({ t: 21.5, h: 45 }), nowMs: () => now.ms, fault: () => fault });
  assert.equal(c.write(Uint8Array.of(0x24, 0x00)), false);
  fault = "stuck";
  assert.equal(c.write(Uint8Array.of(0x24, 0x00)), false);
  assert.equal(c.holdsSdaLow(), true);
  fault = null;
  assert.equal(c.write(Uint8Array.of(0x24, 0x00)), true);
  assert.equal(c.holdsSdaLow(), false);
});
