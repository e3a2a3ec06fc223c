import assert from "node:assert/strict";
import { test } from "node:test";
import { ScriptError, parseValue, smoothNoise } from "./sensors.mjs";

const RANGE = [-40, 85];

test("a daily curve with seeded noise: the same seed gives the same values, another seed others", () => {
  const spec = { base: 21, amplitude: 3, period_s: 86400, noise: 0.5, seed: 7 };
  const a = parseValue(spec, RANGE, "t");
  const b = parseValue({ ...spec }, RANGE, "t");
  const c = parseValue({ ...spec, seed: 8 }, RANGE, "t");
  const times = Array.from({ length: 200 }, (_, i) => i * 433);
  assert.deepEqual(times.map(a), times.map(b));
  assert.notDeepEqual(times.map(a), times.map(c));
  for (const s of times) assert.ok(Math.abs(a(s) - (21 + 3 * Math.sin((2 * Math.PI * s) / 86400))) <= 0.5 + 1e-9);
});

test("the noise wanders smoothly: no jump between nearby seconds, full range over a day", () => {
  const n = smoothNoise(1, 300);
  let maxStep = 0;
  let lo = 1;
  let hi = -1;
  for (let s = 0; s < 86400; s += 1) {
    const v = n(s);
    assert.ok(v >= -1 && v <= 1, `${v} at ${s}`);
    maxStep = Math.max(maxStep, Math.abs(n(s + 1) - v));
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  assert.ok(maxStep < 0.02, `step ${maxStep}`);
  assert.ok(hi - lo > 1.5, `range ${lo}..${hi}`);
});

test("noise that would leave the chip's range, or a bad seed, is named", () => {
  assert.throws(() => parseValue({ base: 84, period_s: 60, noise: 2 }, RANGE, "t"), ScriptError);
  assert.throws(() => parseValue({ base: 20, period_s: 60, noise: -1 }, RANGE, "t"), /noise: must be a number >= 0/);
  assert.throws(() => parseValue({ base: 20, period_s: 60, seed: 1.5 }, RANGE, "t"), /seed: must be an integer/);
  assert.throws(() => parseValue({ base: 20, period_s: 60, noise_step_s: 0 }, RANGE, "t"), /noise_step_s/);
});
