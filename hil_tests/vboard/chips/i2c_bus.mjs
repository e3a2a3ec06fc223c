// An emulated I2C bus: devices at 7-bit addresses, transfers as a board's I2C controller makes them, and the
// faults a real bus has. Errors come back as the errno name the board's machine.I2C raises (see ERRNO_BY_PORT).
//
// A device implements
//   write(bytes: Uint8Array)   a write transfer's data bytes after its address was acknowledged; returns
//                              false when the device does not acknowledge them (a NACK on data)
//   read(n) -> Uint8Array|null a read transfer of n bytes, or null when the device does not acknowledge its
//                              address for reading (e.g. an SHT3x whose measurement is not finished)
//
// Faults (set per address, see setFault):
//   "missing"  no device at the address: the address is not acknowledged, scan() does not list it
//   "nack"     the device acknowledges its address but not the data bytes it is written
//   "stuck"    the device holds SDA low: every transfer on the whole bus times out, scan() finds nothing
//   "crc"      not a bus fault: passed to the device (an SHT3x then sends a bad CRC byte)

// What machine.I2C raises, per MicroPython port (ports/esp32/machine_i2c.c, ports/rp2/machine_i2c.c):
// ESP32: ESP_FAIL (any NACK) -> ENODEV, ESP_ERR_TIMEOUT -> ETIMEDOUT.
// RP2: PICO_ERROR_TIMEOUT -> ETIMEDOUT, any other abort (NACK on address or data) -> EIO.
// SoftI2C (extmod/machine_i2c.c, the same on every port): address NACK -> ENODEV, timeout -> ETIMEDOUT; a NACK
// on data ends the write without an error (writeto returns the number of bytes acknowledged).
export const ERRNO_BY_PORT = {
  esp32: { addressNack: "ENODEV", dataNack: "ENODEV", timeout: "ETIMEDOUT" },
  rp2: { addressNack: "EIO", dataNack: "EIO", timeout: "ETIMEDOUT" },
  soft: { addressNack: "ENODEV", dataNack: null, timeout: "ETIMEDOUT" },
};

export const BUS_FAULTS = ["missing", "nack", "stuck"];

export class I2CError extends Error {
  constructor(errnoName, message) {
    super(message || errnoName);
    this.errno = errnoName;
  }
}

export class I2CBus {
  // faultAt(address) -> null | "missing" | "nack" | "stuck" | "crc": the fault active now (time windows are the
  // caller's business).
  constructor({ faultAt = () => null } = {}) {
    this.devices = new Map();
    this.faultAt = faultAt;
  }

  attach(address, device) {
    if (!Number.isInteger(address) || address < 0x08 || address > 0x77) {
      throw new Error(`I2C address must be a 7-bit address 0x08..0x77, got ${address}`);
    }
    if (this.devices.has(address)) throw new Error(`two devices at I2C address 0x${address.toString(16)}`);
    this.devices.set(address, device);
  }

  _stuck() {
    for (const address of this.devices.keys()) if (this.faultAt(address) === "stuck") return true;
    return false;
  }

  _device(address, errs) {
    if (this._stuck()) throw new I2CError(errs.timeout, "bus stuck: SDA held low");
    const device = this.devices.get(address);
    const fault = device ? this.faultAt(address) : "missing";
    if (!device || fault === "missing") throw new I2CError(errs.addressNack, "address not acknowledged");
    return { device, fault };
  }

  // Addresses that acknowledge an empty write (what machine.I2C.scan() does).
  scan() {
    if (this._stuck()) return [];
    return [...this.devices.keys()].filter((a) => this.faultAt(a) !== "missing").sort((x, y) => x - y);
  }

  // One transfer: write `data` (may be empty), then, if readLen > 0, a repeated start and a read of readLen
  // bytes. Returns the bytes read (Uint8Array) or, for a soft-I2C write whose data was not acknowledged, the
  // number of bytes acknowledged. Throws I2CError with the port's errno name.
  transfer(address, data, readLen, port = "esp32") {
    const errs = ERRNO_BY_PORT[port] || ERRNO_BY_PORT.esp32;
    const { device, fault } = this._device(address, errs);
    if (data.length || !readLen) {
      if (fault === "nack" && data.length) {
        if (errs.dataNack) throw new I2CError(errs.dataNack, "data not acknowledged");
        if (!readLen) return 0;
      } else if (data.length && device.write(data) === false) {
        if (errs.dataNack) throw new I2CError(errs.dataNack, "data not acknowledged");
        if (!readLen) return 0;
      }
    }
    if (!readLen) return data.length;
    if (fault === "nack") {
      // The address is acknowledged; what comes back is the bus's idle level (soft I2C), or the hardware
      // controller already aborted on the NACKed register byte (above).
      return new Uint8Array(readLen).fill(0xff);
    }
    const out = device.read(readLen);
    if (out === null) throw new I2CError(errs.addressNack, "read not acknowledged");
    return out;
  }
}
