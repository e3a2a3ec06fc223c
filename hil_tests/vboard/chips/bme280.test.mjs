import assert from "node:assert/strict";
import { test } from "node:test";
import {
  BME280, CHIP_ID, DEFAULT_CALIBRATION as C, compensateH, compensateP, compensateT, measurementMs, rawFor, resolutionBits,
} from "./bme280.mjs";

test("compensation reproduces the datasheet's worked example (BMP280 datasheet 3.12)", () => {
  const { t, tFine } = compensateT(519888, C);
  assert.equal(tFine, 128422);
  assert.equal(t, 2508); // 25.08 degC
  const p = compensateP(415148, tFine, C);
  assert.equal(Math.round(p / 256), 100653); // 100653 Pa (the example's 100653.27 Pa)
});

// Inversion round trip: for values across the chip's range, the raw registers the emulator writes compensate
// back to the value within the chip's quantisation at x1 oversampling (16-bit ADC: one ADC step).
test("inverted raw values compensate back to the scripted ones within one ADC step", () => {
  for (const T of [-40, -10.37, 0, 21.5, 25.08, 37.77, 85]) {
    for (const P of [30000, 80000.5, 101325, 110000]) {
      for (const H of [0, 12.3, 45, 99.99, 100]) {
        const raw = rawFor({ t: T, p: P, h: H }, C);
        const { t, tFine } = compensateT(raw.adcT, C);
        // the step of one 16-bit code (16 raw counts) in the output, plus the output's own rounding
        const stepT = compensateT(raw.adcT + 16, C).t - t;
        assert.ok(Math.abs(t - T * 100) <= stepT / 2 + 1, `T ${T}: got ${t}`);
        const p = compensateP(raw.adcP, tFine, C);
        const stepP = Math.abs(compensateP(raw.adcP + 16, tFine, C) - p);
        assert.ok(Math.abs(p - P * 256) <= stepP / 2 + 256, `P ${P}: got ${p / 256}`);
        const h = compensateH(raw.adcH, tFine, C);
        const stepH = Math.max(
          Math.abs(compensateH(Math.min(65535, raw.adcH + 1), tFine, C) - h),
          Math.abs(h - compensateH(Math.max(0, raw.adcH - 1), tFine, C)),
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
  const raw = rawFor({ t: 21.5, p: 101325.4, h: 45 }, C, { t: 5, p: 5, h: 5 });
  const { tFine } = compensateT(raw.adcT, C);
  assert.ok(Math.abs(compensateP(raw.adcP, tFine, C) / 256 - 101325.4) < 0.2);
});

test("measurement time at x1 is 9.3 ms (datasheet 9.1)", () => {
  assert.ok(Math.abs(measurementMs(1, 1, 1) - 9.3) < 1e-9);
});

function chip(values, now = { ms: 0 }) {
  return { now, chip: new BME280({ values: () => values, nowMs: () => now.ms }) };
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
  const raw = rawFor({ t: 21.5, p: 101325, h: 45 }, C);
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
