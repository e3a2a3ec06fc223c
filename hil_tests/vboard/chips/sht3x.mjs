// Sensirion SHT3x-DIS at command level (datasheet "SHT3x-DIS", version 6): single-shot measurements without
// clock stretching (0x2400 / 0x240B / 0x2416) and with it (0x2C06 / 0x2C0D / 0x2C10), soft reset (0x30A2),
// status register (0xF32D) and clear status (0x3041); every 16-bit word is followed by its CRC-8
// (polynomial 0x31, init 0xFF, section 4.12). Without clock stretching a read before the measurement is done is
// not acknowledged (section 4.3); with clock stretching the emulator simply answers (no SCL is modelled).
// Not modelled: periodic mode, ART, the heater, alert limits, noise.

// Measurement duration, maximum, ms (table 4): high, medium, low repeatability.
const DURATION_MS = { high: 15, medium: 6, low: 4 };
const SINGLE_SHOT = {
  0x2400: "high", 0x240b: "medium", 0x2416: "low",
  0x2c06: "high", 0x2c0d: "medium", 0x2c10: "low",
};
const STRETCH = new Set([0x2c06, 0x2c0d, 0x2c10]);
const CMD_SOFT_RESET = 0x30a2;
const CMD_READ_STATUS = 0xf32d;
const CMD_CLEAR_STATUS = 0x3041;
const RESET_MS = 1.5; // soft reset time, max (table 4)

export function crc8(bytes) {
  let crc = 0xff;
  for (const b of bytes) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 0x80 ? ((crc << 1) ^ 0x31) & 0xff : (crc << 1) & 0xff;
  }
  return crc;
}

// Physical values -> the 16-bit signals (section 4.13): T = -45 + 175 * S_T / 65535, RH = 100 * S_RH / 65535.
export function rawFor({ t, h }) {
  const clamp = (v) => Math.min(65535, Math.max(0, Math.round(v)));
  return { st: clamp(((t + 45) * 65535) / 175), srh: clamp((h * 65535) / 100) };
}

export class SHT3x {
  // values(nowMs) -> {t, h}; nowMs() -> board uptime; fault() -> the fault active now ("crc" matters here).
  constructor({ values, nowMs, fault = () => null }) {
    this.values = values;
    this.nowMs = nowMs;
    this.fault = fault;
    this.pending = null; // {readyMs, stretch} once a measurement was started
    this.output = null; // the bytes the next read returns (status register)
    this.status = 0x0010; // bit 4: system reset detected (after power-on)
    this.busyUntil = 0;
  }

  _word(v, corrupt) {
    const w = [(v >> 8) & 0xff, v & 0xff];
    return [...w, corrupt ? crc8(w) ^ 0xff : crc8(w)];
  }

  write(bytes) {
    if (this.nowMs() < this.busyUntil) return false; // resetting: commands are not acknowledged
    if (bytes.length !== 2) {
      this.status |= 0x0002; // command status: last command not processed
      return bytes.length < 2; // a lone byte is acknowledged (the command is then incomplete)
    }
    const cmd = (bytes[0] << 8) | bytes[1];
    if (cmd in SINGLE_SHOT) {
      if (this.pending && this.nowMs() < this.pending.readyMs) return false; // busy measuring: NACK
      this.pending = { readyMs: this.nowMs() + DURATION_MS[SINGLE_SHOT[cmd]], stretch: STRETCH.has(cmd) };
      this.output = null;
      return true;
    }
    if (cmd === CMD_SOFT_RESET) {
      this.pending = null;
      this.output = null;
      this.status = 0x0010;
      this.busyUntil = this.nowMs() + RESET_MS;
      return true;
    }
    if (cmd === CMD_READ_STATUS) {
      this.output = this._word(this.status, false);
      return true;
    }
    if (cmd === CMD_CLEAR_STATUS) {
      this.status &= ~0x0012;
      return true;
    }
    this.status |= 0x0002;
    return false; // unknown command: not acknowledged
  }

  read(n) {
    let data;
    if (this.output) {
      data = this.output;
      this.output = null;
    } else if (this.pending) {
      const now = this.nowMs();
      if (now < this.pending.readyMs && !this.pending.stretch) return null; // not ready: read header NACKed
      const at = Math.max(now, this.pending.readyMs);
      const { st, srh } = rawFor(this.values(at));
      const corrupt = this.fault() === "crc";
      data = [...this._word(st, corrupt), ...this._word(srh, corrupt)];
      this.pending = null;
    } else return null; // no measurement: the read header is not acknowledged
    const out = new Uint8Array(n).fill(0xff); // past the data the bus reads its idle level
    out.set(data.slice(0, n));
    return out;
  }
}
