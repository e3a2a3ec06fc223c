// The BME280 and SHT3x as the I2C bus sees them, backed by the Wokwi custom chips (hil_tests/chips/, built to
// build/chips/*.chip.wasm by `make wokwi-chips`) running in chip_host.mjs. The constructors take what the
// JavaScript models they replace took, so a board swaps models by changing one import:
//
//   new BME280({ values, nowMs, fault })   values(ms) -> {t, p, h} (degC, Pa, %RH) at board uptime ms
//   new SHT3x({ values, nowMs, fault })    values(ms) -> {t, h}; fault() -> "crc" | "nack" | ... | null
//
// and each object is a device for i2c_bus.mjs: write(bytes) -> bool, read(n) -> Uint8Array | null. Physical
// values and faults reach the chip as its Wokwi attributes (temperature, pressure, humidity, fault), read by the
// chip when it measures, so a script's values over time come in as they would from a Wokwi control.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ChipHost, I2CChipDevice } from "./chip_host.mjs";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const CHIPS_BUILD_DIR = process.env.PINSEAL_CHIPS_DIR || path.join(REPO, "build", "chips");
export const chipWasm = (name) => path.join(CHIPS_BUILD_DIR, `${name}.chip.wasm`);

// The chips' "fault" attribute codes (see each chip's .chip.c).
export const FAULT_CODES = {
  bme280: { nack: 1, stuck: 2, missing: 3 },
  sht3x: { nack: 1, stuck: 2, missing: 3, crc: 4 },
};

const ATTRS = { t: "temperature", p: "pressure", h: "humidity" };

class WasmSensor extends I2CChipDevice {
  constructor(name, address, { values, nowMs, fault = () => null, log }) {
    let cache = null;
    const at = (ms) => {
      if (!cache || cache.ms !== ms) cache = { ms, v: values(ms) };
      return cache.v;
    };
    const attrs = { address, fault: () => FAULT_CODES[name][fault()] || 0 };
    for (const [key, attr] of Object.entries(ATTRS)) attrs[attr] = (ms) => at(ms)[key] ?? 0;
    const host = new ChipHost({ wasm: chipWasm(name), attrs, nowNs: () => nowMs() * 1e6, log });
    super(host, address);
  }
}

export class BME280 extends WasmSensor {
  constructor({ address = 0x76, ...opts }) {
    super("bme280", address, opts);
  }
}

export class SHT3x extends WasmSensor {
  constructor({ address = 0x44, ...opts }) {
    super("sht3x", address, opts);
  }
}
