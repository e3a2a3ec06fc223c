// Bosch BME280 at register level (datasheet BST-BME280-DS002): chip id, calibration registers, soft reset,
// ctrl_hum / ctrl_meas / config, status, and the raw ADC registers. The raw values are found by INVERTING the
// datasheet's integer compensation (section 4.2.3: BME280_compensate_T_int32, _P_int64, _H_int32) for the
// physical values the script asks for, so that a driver running that compensation gets them back within the
// chip's quantisation: 16 + (oversampling - 1) bits for temperature and pressure (datasheet tables 4 and 5),
// 16 bits for humidity.
//
// Not modelled: the IIR filter (config.filter: it only smooths), normal mode's standby timing (in normal mode the
// registers hold a fresh conversion at every read), noise, self-heating, SPI.

export const CHIP_ID = 0x60;
const REG_CALIB00 = 0x88; // 0x88..0xA1: dig_T1..dig_P9, 0xA0 reserved, 0xA1 dig_H1
const REG_CHIP_ID = 0xd0;
const REG_RESET = 0xe0;
const REG_CALIB26 = 0xe1; // 0xE1..0xE7: dig_H2..dig_H6
const REG_CTRL_HUM = 0xf2;
const REG_STATUS = 0xf3;
const REG_CTRL_MEAS = 0xf4;
const REG_CONFIG = 0xf5;
const REG_DATA = 0xf7; // press_msb .. hum_lsb (8 bytes)
const RESET_WORD = 0xb6;
const NVM_COPY_MS = 2; // status.im_update after power-on / soft reset (start-up time 2 ms, table 1)

// A plausible calibration set: dig_T*/dig_P* are the worked example of Bosch's BMP280 datasheet (section 3.12,
// whose compensation is identical to the BME280's), dig_H* values typical of BME280 parts.
export const DEFAULT_CALIBRATION = {
  T1: 27504, T2: 26435, T3: -1000,
  P1: 36477, P2: -10685, P3: 3024, P4: 2855, P5: 140, P6: -7, P7: 15500, P8: -14600, P9: 6000,
  H1: 75, H2: 362, H3: 0, H4: 313, H5: 50, H6: 30,
};

// Calibration as the chip's NVM bytes: {addr: byte}.
export function calibrationBytes(c) {
  const regs = {};
  const u16 = (addr, v) => {
    regs[addr] = v & 0xff;
    regs[addr + 1] = (v >> 8) & 0xff;
  };
  [c.T1, c.T2, c.T3, c.P1, c.P2, c.P3, c.P4, c.P5, c.P6, c.P7, c.P8, c.P9].forEach((v, i) => u16(REG_CALIB00 + 2 * i, v));
  regs[0xa0] = 0;
  regs[0xa1] = c.H1 & 0xff;
  u16(0xe1, c.H2);
  regs[0xe3] = c.H3 & 0xff;
  regs[0xe4] = (c.H4 >> 4) & 0xff; // dig_H4 [11:4]
  regs[0xe5] = (c.H4 & 0x0f) | ((c.H5 & 0x0f) << 4); // dig_H4 [3:0], dig_H5 [3:0]
  regs[0xe6] = (c.H5 >> 4) & 0xff; // dig_H5 [11:4]
  regs[0xe7] = c.H6 & 0xff;
  return regs;
}

// --- the datasheet's integer compensation (section 4.2.3), exactly, in BigInt -------------------------------
const B = BigInt;

export function compensateT(adcT, c) {
  const a = B(adcT);
  const var1 = (((a >> 3n) - (B(c.T1) << 1n)) * B(c.T2)) >> 11n;
  const d = (a >> 4n) - B(c.T1);
  const var2 = (((d * d) >> 12n) * B(c.T3)) >> 14n;
  const tFine = var1 + var2;
  return { t: Number((tFine * 5n + 128n) >> 8n), tFine: Number(tFine) };
}

// Pressure in Pa as unsigned Q24.8 (1/256 Pa), the int64 variant.
export function compensateP(adcP, tFine, c) {
  let var1 = B(tFine) - 128000n;
  let var2 = var1 * var1 * B(c.P6);
  var2 = var2 + ((var1 * B(c.P5)) << 17n);
  var2 = var2 + (B(c.P4) << 35n);
  var1 = ((var1 * var1 * B(c.P3)) >> 8n) + ((var1 * B(c.P2)) << 12n);
  var1 = (((1n << 47n) + var1) * B(c.P1)) >> 33n;
  if (var1 === 0n) return 0;
  let p = 1048576n - B(adcP);
  p = (((p << 31n) - var2) * 3125n) / var1; // BigInt division truncates toward zero, as C's does
  var1 = (B(c.P9) * (p >> 13n) * (p >> 13n)) >> 25n;
  var2 = (B(c.P8) * p) >> 19n;
  p = ((p + var1 + var2) >> 8n) + (B(c.P7) << 4n);
  return Number(p);
}

// Relative humidity in %RH as unsigned Q22.10 (1/1024 %RH).
export function compensateH(adcH, tFine, c) {
  let v = B(tFine) - 76800n;
  v =
    ((((B(adcH) << 14n) - (B(c.H4) << 20n) - B(c.H5) * v) + 16384n) >> 15n) *
    (((((((v * B(c.H6)) >> 10n) * (((v * B(c.H3)) >> 11n) + 32768n)) >> 10n) + 2097152n) * B(c.H2) + 8192n) >> 14n);
  v = v - (((((v >> 15n) * (v >> 15n)) >> 7n) * B(c.H1)) >> 4n);
  if (v < 0n) v = 0n;
  if (v > 419430400n) v = 419430400n;
  return Number(v >> 12n);
}

// --- inversion --------------------------------------------------------------------------------------------
// Smallest code k in [0, 2^bits) whose output (monotonic in k, increasing or not) reaches the target, then the
// nearer of k and its neighbour: the raw value whose compensated output is closest to the target.
function nearestCode(bits, out, target, increasing) {
  let lo = 0;
  let hi = (1 << bits) - 1;
  const reached = (k) => (increasing ? out(k) >= target : out(k) <= target);
  if (!reached(hi)) return hi;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (reached(mid)) hi = mid;
    else lo = mid + 1;
  }
  if (lo > 0 && Math.abs(out(lo - 1) - target) <= Math.abs(out(lo) - target)) return lo - 1;
  return lo;
}

// Oversampling setting (osrs field 1..5 = x1..x16) -> ADC resolution in bits (datasheet tables 4 and 5).
export const resolutionBits = (osrs) => 15 + Math.min(osrs, 5);

// Raw 20-bit adc_T and adc_P, 16-bit adc_H for physical values (degC, Pa, %RH), at the given oversampling
// settings (0 = skipped: the chip then reports 0x80000 / 0x8000).
export function rawFor({ t, p, h }, c = DEFAULT_CALIBRATION, osrs = { t: 1, p: 1, h: 1 }) {
  const bitsT = resolutionBits(osrs.t || 1);
  const shiftT = 20 - bitsT;
  const kT = nearestCode(bitsT, (k) => compensateT(k << shiftT, c).t, t * 100, true);
  const adcT = kT << shiftT;
  const { tFine } = compensateT(adcT, c);
  const bitsP = resolutionBits(osrs.p || 1);
  const shiftP = 20 - bitsP;
  const adcP = nearestCode(bitsP, (k) => compensateP(k << shiftP, tFine, c), p * 256, false) << shiftP;
  const adcH = nearestCode(16, (k) => compensateH(k, tFine, c), h * 1024, true);
  return {
    adcT: osrs.t ? adcT : 0x80000,
    adcP: osrs.p ? adcP : 0x80000,
    adcH: osrs.h ? adcH : 0x8000,
  };
}

// Measurement time in ms (datasheet 9.1, maximum): 1.25 + 2.3*T + (2.3*P + 0.575) + (2.3*H + 0.575), with the
// oversampling factors 0, 1, 2, 4, 8, 16.
const OVERSAMPLING = [0, 1, 2, 4, 8, 16, 16, 16];
export function measurementMs(osrsT, osrsP, osrsH) {
  const [t, p, h] = [OVERSAMPLING[osrsT], OVERSAMPLING[osrsP], OVERSAMPLING[osrsH]];
  return 1.25 + 2.3 * t + (p ? 2.3 * p + 0.575 : 0) + (h ? 2.3 * h + 0.575 : 0);
}

// The chip. values(nowMs) -> {t, p, h} physical values at board uptime nowMs; nowMs() -> board uptime.
export class BME280 {
  constructor({ values, nowMs, calibration = DEFAULT_CALIBRATION }) {
    this.values = values;
    this.nowMs = nowMs;
    this.calibration = calibration;
    this.nvm = calibrationBytes(calibration);
    this.pointer = 0;
    this.powerOn();
  }

  powerOn() {
    this.regs = new Uint8Array(256);
    for (const [addr, v] of Object.entries(this.nvm)) this.regs[Number(addr)] = v;
    this.regs[REG_CHIP_ID] = CHIP_ID;
    // Data registers after reset: 0x80000 / 0x8000 (datasheet table 18).
    this.regs.set([0x80, 0x00, 0x00, 0x80, 0x00, 0x00, 0x80, 0x00], REG_DATA);
    this.humLatched = 0;
    this.nvmUntil = this.nowMs() + NVM_COPY_MS;
    this.conversion = null; // {startMs, doneMs, osrs}
  }

  _mode() {
    return this.regs[REG_CTRL_MEAS] & 0x03;
  }

  _osrs() {
    const m = this.regs[REG_CTRL_MEAS];
    return { t: (m >> 5) & 7, p: (m >> 2) & 7, h: this.humLatched & 7 };
  }

  _latch(atMs, osrs) {
    const v = this.values(atMs);
    const raw = rawFor(v, this.calibration, osrs);
    const d = [
      (raw.adcP >> 12) & 0xff, (raw.adcP >> 4) & 0xff, (raw.adcP & 0x0f) << 4,
      (raw.adcT >> 12) & 0xff, (raw.adcT >> 4) & 0xff, (raw.adcT & 0x0f) << 4,
      (raw.adcH >> 8) & 0xff, raw.adcH & 0xff,
    ];
    this.regs.set(d, REG_DATA);
  }

  // Finish a forced conversion whose time is up: data registers updated, back to sleep mode.
  _advance() {
    const now = this.nowMs();
    if (this.conversion && now >= this.conversion.doneMs) {
      this._latch(this.conversion.doneMs, this.conversion.osrs);
      this.conversion = null;
      this.regs[REG_CTRL_MEAS] &= ~0x03;
    }
    if (!this.conversion && this._mode() === 0x03) this._latch(now, this._osrs());
  }

  _writeReg(reg, value) {
    if (reg === REG_RESET) {
      if (value === RESET_WORD) this.powerOn();
      return;
    }
    if (reg === REG_CTRL_HUM) this.regs[reg] = value & 0x07;
    else if (reg === REG_CONFIG) this.regs[reg] = value & 0xfd;
    else if (reg === REG_CTRL_MEAS) {
      this._advance();
      this.regs[reg] = value;
      this.humLatched = this.regs[REG_CTRL_HUM]; // ctrl_hum takes effect on a write to ctrl_meas (5.4.3)
      const mode = value & 0x03;
      if (mode === 0x01 || mode === 0x02) {
        const osrs = this._osrs();
        const start = this.nowMs();
        this.conversion = { startMs: start, doneMs: start + measurementMs(osrs.t, osrs.p, osrs.h), osrs };
      } else this.conversion = null;
    }
    // other registers are read-only
  }

  // I2C write (datasheet 6.2.1): the first byte sets the register pointer; further bytes come in pairs of
  // (register address, data) — there is no auto-increment on writes.
  write(bytes) {
    if (!bytes.length) return true;
    this.pointer = bytes[0];
    if (bytes.length >= 2) this._writeReg(bytes[0], bytes[1]);
    for (let i = 2; i + 1 < bytes.length; i += 2) this._writeReg(bytes[i], bytes[i + 1]);
    return true;
  }

  // I2C read: from the register pointer, auto-incrementing (burst reads are consistent: shadowing, 4.1).
  read(n) {
    this._advance();
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const reg = (this.pointer + i) & 0xff;
      out[i] = reg === REG_STATUS ? this._status() : this.regs[reg];
    }
    this.pointer = (this.pointer + n) & 0xff;
    return out;
  }

  _status() {
    const now = this.nowMs();
    return (this.conversion && now < this.conversion.doneMs ? 0x08 : 0) | (now < this.nvmUntil ? 0x01 : 0);
  }
}
