// The BME280 Wokwi chip (hil_tests/chips/bme280/bme280.chip.c, built by `make wokwi-chips`), run in the Node
// Chips-API host: its compensation (exported for these tests), the inversion, and the chip over I2C.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ChipHost } from "./chip_host.mjs";
import { BME280, chipWasm } from "./wasm_chips.mjs";

const CHIP_ID = 0x60;
// The calibration the chip carries (the BMP280 datasheet's worked example for T and P): written out here
// independently of the C source, so a change there shows up as a failure.
const C = { T1: 27504, H1: 75 };

const lib = new ChipHost({ wasm: chipWasm("bme280"), nowNs: () => 0 });
const e = lib.exports;
const compensateT = (adc) => ({ t: e.pinseal_bme280_compensate_t(adc), tFine: e.pinseal_bme280_t_fine(adc) });
const compensateP = (adc, tFine) => e.pinseal_bme280_compensate_p(adc, tFine);
const compensateH = (adc, tFine) => e.pinseal_bme280_compensate_h(adc, tFine) >>> 0;
const resolutionBits = (osrs) => e.pinseal_bme280_resolution_bits(osrs);
const measurementMs = (t, p, h) => e.pinseal_bme280_measurement_us(t, p, h) / 1000;
function rawFor({ t, p, h }, osrs = { t: 1, p: 1, h: 1 }) {
  const ptr = e.pinseal_bme280_raw_for(t, p, h, osrs.t, osrs.p, osrs.h);
  const [adcT, adcP, adcH] = new Int32Array(lib.memory.buffer, ptr, 3);
  return { adcT, adcP, adcH };
}

test("compensation reproduces the datasheet's worked example (BMP280 datasheet 3.12)", () => {
  const { t, tFine } = compensateT(519888);
  assert.equal(tFine, 128422);
  assert.equal(t, 2508); // 25.08 degC
  const p = compensateP(415148, tFine);
  assert.equal(Math.round(p / 256), 100653); // 100653 Pa (the example's 100653.27 Pa)
});

// Inversion round trip: for values across the chip's range, the raw registers the emulator writes compensate
// back to the value within the chip's quantisation at x1 oversampling (16-bit ADC: one ADC step).
test("inverted raw values compensate back to the scripted ones within one ADC step", () => {
  for (const T of [-40, -10.37, 0, 21.5, 25.08, 37.77, 85]) {
    for (const P of [30000, 80000.5, 101325, 110000]) {
      for (const H of [0, 12.3, 45, 99.99, 100]) {
        const raw = rawFor({ t: T, p: P, h: H });
        const { t, tFine } = compensateT(raw.adcT);
        // the step of one 16-bit code (16 raw counts) in the output, plus the output's own rounding
        const stepT = compensateT(raw.adcT + 16).t - t;
        assert.ok(Math.abs(t - T * 100) <= stepT / 2 + 1, `T ${T}: got ${t}`);
        const p = compensateP(raw.adcP, tFine);
        const stepP = Math.abs(compensateP(raw.adcP + 16, tFine) - p);
        assert.ok(Math.abs(p - P * 256) <= stepP / 2 + 256, `P ${P}: got ${p / 256}`);
        const h = compensateH(raw.adcH, tFine);
        const stepH = Math.max(
          Math.abs(compensateH(Math.min(65535, raw.adcH + 1), tFine) - h),
          Math.abs(h - compensateH(Math.max(0, raw.adcH - 1), tFine)),
        );
        assert.ok(Math.abs(h - H * 1024) <= stepH / 2 + 1, `H ${H}: got ${h / 1024} (step ${stepH})`);
        assert.ok(Math.abs(h - H * 1024) <= 6, `H ${H}: within 6/1024 %RH`);
        assert.equal(raw.adcT % 16, 0, "x1 oversampling: 16-bit temperature");
        assert.equal(raw.adcP % 16, 0, "x1 oversampling: 16-bit pressure");
      }
    }
  }
});

test("oversampling x16 gives 20-bit resolution and finer results", () => {
  assert.equal(resolutionBits(5), 20);
  const raw = rawFor({ t: 21.5, p: 101325.4, h: 45 }, { t: 5, p: 5, h: 5 });
  const { tFine } = compensateT(raw.adcT);
  assert.ok(Math.abs(compensateP(raw.adcP, tFine) / 256 - 101325.4) < 0.2);
});

test("measurement time at x1 is 9.3 ms (datasheet 9.1)", () => {
  assert.ok(Math.abs(measurementMs(1, 1, 1) - 9.3) < 1e-9);
});

function chip(values, now = { ms: 0 }, extra = {}) {
  const v = typeof values === "function" ? values : () => values;
  return { now, chip: new BME280({ values: v, nowMs: () => now.ms, ...extra }) };
}

const readReg = (c, reg, n) => {
  c.write(Uint8Array.of(reg));
  return c.read(n);
};

test("chip id, calibration bytes, writes in (register, data) pairs, reset", () => {
  const { chip: c, now } = chip({ t: 20, p: 100000, h: 50 });
  assert.equal(readReg(c, 0xd0, 1)[0], CHIP_ID);
  const cal = readReg(c, 0x88, 2);
  assert.equal(cal[0] | (cal[1] << 8), C.T1);
  assert.equal(readReg(c, 0xa1, 1)[0], C.H1);
  c.write(Uint8Array.of(0xf2, 0x01, 0xf5, 0x10));
  assert.equal(readReg(c, 0xf2, 1)[0], 0x01);
  assert.equal(readReg(c, 0xf5, 1)[0], 0x10);
  now.ms = 10;
  c.write(Uint8Array.of(0xe0, 0xb6));
  assert.equal(readReg(c, 0xf2, 1)[0], 0);
  assert.equal(readReg(c, 0xf3, 1)[0] & 0x01, 1, "im_update right after reset");
  now.ms = 13;
  assert.equal(readReg(c, 0xf3, 1)[0] & 0x01, 0);
});

test("forced mode: measuring until the conversion time, then data registers and sleep mode", () => {
  const { chip: c, now } = chip({ t: 21.5, p: 101325, h: 45 });
  assert.deepEqual([...readReg(c, 0xf7, 8)], [0x80, 0, 0, 0x80, 0, 0, 0x80, 0], "reset values");
  c.write(Uint8Array.of(0xf2, 0x01));
  c.write(Uint8Array.of(0xf4, 0x25)); // osrs_t x1, osrs_p x1, forced
  assert.equal(readReg(c, 0xf3, 1)[0] & 0x08, 0x08);
  assert.deepEqual([...readReg(c, 0xf7, 3)], [0x80, 0, 0], "old data while measuring");
  now.ms = 9.3;
  assert.equal(readReg(c, 0xf3, 1)[0] & 0x08, 0);
  const d = readReg(c, 0xf7, 8);
  const raw = rawFor({ t: 21.5, p: 101325, h: 45 });
  assert.equal((d[3] << 12) | (d[4] << 4) | (d[5] >> 4), raw.adcT);
  assert.equal((d[0] << 12) | (d[1] << 4) | (d[2] >> 4), raw.adcP);
  assert.equal((d[6] << 8) | d[7], raw.adcH);
  assert.equal(readReg(c, 0xf4, 1)[0] & 0x03, 0, "back to sleep");
});

test("humidity skipped when ctrl_hum was not written before ctrl_meas", () => {
  const { chip: c, now } = chip({ t: 21.5, p: 101325, h: 45 });
  c.write(Uint8Array.of(0xf4, 0x25));
  now.ms = 20;
  const d = readReg(c, 0xf7, 8);
  assert.equal((d[6] << 8) | d[7], 0x8000);
});

// The conversion ends on the chip's timer: the values are those at its end (9.3 ms), not at the later read.
test("a forced conversion latches the values of the moment it ends, read later", () => {
  const values = (ms) => ({ t: ms < 9 ? 10 : ms < 15 ? 30 : 50, p: 101325, h: 45 });
  const { chip: c, now } = chip(values);
  c.write(Uint8Array.of(0xf2, 0x01));
  c.write(Uint8Array.of(0xf4, 0x25));
  now.ms = 40;
  const d = readReg(c, 0xf7, 8);
  assert.equal((d[3] << 12) | (d[4] << 4) | (d[5] >> 4), rawFor({ t: 30, p: 101325, h: 45 }).adcT);
});

test("normal mode latches a fresh conversion at every read", () => {
  const now = { ms: 0 };
  let t = 15;
  const { chip: c } = chip(() => ({ t, p: 101325, h: 45 }), now);
  c.write(Uint8Array.of(0xf2, 0x01, 0xf4, 0x27)); // normal mode
  const adcT = () => {
    const d = readReg(c, 0xf7, 8);
    return (d[3] << 12) | (d[4] << 4) | (d[5] >> 4);
  };
  assert.equal(adcT(), rawFor({ t: 15, p: 101325, h: 45 }).adcT);
  t = 35;
  now.ms = 1000;
  assert.equal(adcT(), rawFor({ t: 35, p: 101325, h: 45 }).adcT);
});

// Faults as the chip's "fault" attribute (Wokwi: a diagram attr or control), at the chip's own I2C level.
test("fault attribute: missing NACKs the address, nack the data, stuck holds SDA low", () => {
  let fault = null;
  const { chip: c } = chip({ t: 20, p: 100000, h: 50 }, { ms: 0 }, { fault: () => fault });
  assert.equal(readReg(c, 0xd0, 1)[0], CHIP_ID);
  fault = "missing";
  assert.equal(c.write(Uint8Array.of(0xd0)), false);
  assert.equal(c.read(1), null);
  fault = "nack";
  assert.equal(c.write(Uint8Array.of(0xd0)), false);
  assert.deepEqual([...c.read(2)], [0xff, 0xff], "the idle level");
  fault = "stuck";
  assert.equal(c.read(1), null);
  assert.equal(c.holdsSdaLow(), true);
  fault = null;
  assert.equal(readReg(c, 0xd0, 1)[0], CHIP_ID);
  assert.equal(c.holdsSdaLow(), false, "SDA released when the fault ends");
});
