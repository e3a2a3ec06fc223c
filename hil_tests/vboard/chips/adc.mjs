// A board's ADC seen from machine.ADC: a 12-bit converter (ESP32, ESP32-S3, RP2040, RP2350) whose reading
// read_u16() scales to 16 bits as both ports do (raw << 4 | raw >> 8: ports/esp32/machine_adc.c and
// ports/rp2/machine_adc.c), and, on ESP32 ports, read_uv() (calibrated microvolts; modelled as ideal).
// The battery is wired through a divider: pin voltage = battery voltage * den / num.
// Not modelled: the ESP32 ADC's non-linearity above ~2.45 V at 11 dB, noise, the RP2040 ADC's DNL spikes.

export const ADC_BITS = 12;
const FULL = (1 << ADC_BITS) - 1;

// The 12-bit code for a pin voltage against a full scale of vrefMv (clamped to the converter's range).
export function codeFor(pinMv, vrefMv) {
  return Math.min(FULL, Math.max(0, Math.round((pinMv / vrefMv) * FULL)));
}

export const u16FromCode = (code) => ((code << 4) | (code >> 8)) & 0xffff;

// Battery millivolts -> what the ADC pin reads. divider {num, den}: battery = pin * num / den.
export function batteryReading(batteryMv, { num, den }, vrefMv) {
  const pinMv = (batteryMv * den) / num;
  const code = codeFor(pinMv, vrefMv);
  // read_uv on an ESP32 is calibrated: model it as exact to the converter's step.
  const uv = Math.round((code / FULL) * vrefMv * 1000);
  return { code, u16: u16FromCode(code), uv };
}
