import assert from "node:assert/strict";
import { test } from "node:test";
import { I2CBus, I2CError } from "./i2c_bus.mjs";
import { batteryReading, codeFor, u16FromCode } from "./adc.mjs";

class Echo {
  write() {
    return true;
  }
  read(n) {
    return new Uint8Array(n).fill(0x42);
  }
}

function bus(faults) {
  const b = new I2CBus({ faultAt: (a) => faults[a] || null });
  b.attach(0x76, new Echo());
  b.attach(0x44, new Echo());
  return b;
}

const errnoOf = (fn) => {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof I2CError);
    return e.errno;
  }
  assert.fail("no error");
};

test("scan lists acknowledging devices; missing and stuck change it", () => {
  assert.deepEqual(bus({}).scan(), [0x44, 0x76]);
  assert.deepEqual(bus({ 0x76: "missing" }).scan(), [0x44]);
  assert.deepEqual(bus({ 0x76: "nack" }).scan(), [0x44, 0x76], "nack on data: the address still answers");
  assert.deepEqual(bus({ 0x76: "stuck" }).scan(), []);
});

test("faults give each port's errno (ESP32 ENODEV, RP2 EIO, timeouts ETIMEDOUT, soft I2C)", () => {
  const data = Uint8Array.of(0xd0);
  assert.equal(errnoOf(() => bus({ 0x76: "missing" }).transfer(0x76, data, 1, "esp32")), "ENODEV");
  assert.equal(errnoOf(() => bus({ 0x76: "missing" }).transfer(0x76, data, 1, "rp2")), "EIO");
  assert.equal(errnoOf(() => bus({ 0x76: "nack" }).transfer(0x76, data, 1, "esp32")), "ENODEV");
  assert.equal(errnoOf(() => bus({ 0x76: "nack" }).transfer(0x76, data, 1, "rp2")), "EIO");
  assert.equal(errnoOf(() => bus({ 0x76: "stuck" }).transfer(0x44, data, 1, "rp2")), "ETIMEDOUT", "the whole bus");
  assert.equal(errnoOf(() => bus({}).transfer(0x50, data, 1, "esp32")), "ENODEV", "no device");
  assert.equal(errnoOf(() => bus({ 0x76: "missing" }).transfer(0x76, data, 1, "soft")), "ENODEV");
  assert.equal(bus({ 0x76: "nack" }).transfer(0x76, data, 0, "soft"), 0, "soft write: 0 bytes acknowledged");
  assert.deepEqual([...bus({}).transfer(0x76, data, 2, "esp32")], [0x42, 0x42]);
});

test("ADC: 12-bit code scaled to 16 bits as the ports do; battery through the divider", () => {
  assert.equal(u16FromCode(4095), 65535);
  assert.equal(u16FromCode(0), 0);
  assert.equal(codeFor(1650, 3300), 2048);
  const r = batteryReading(3900, { num: 3, den: 1 }, 3300);
  assert.equal(r.code, codeFor(1300, 3300));
  assert.ok(Math.abs(r.uv / 1000 - 1300) < 3300 / 4095);
});
