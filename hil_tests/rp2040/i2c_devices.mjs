// The one place where the RP2040's I2C controller (rp2040js RPI2C, byte by byte) meets "I2C devices on a bus"
// (transaction by transaction): anything with the I2CBus interface of hil_tests/vboard/chips/i2c_bus.mjs,
//   transfer(address, writeBytes, readLen, port) -> Uint8Array | number, throws I2CError on a NACK/timeout
// Swapping the chip models (JavaScript today, Wokwi Chips-API WebAssembly later) changes only which bus object
// the board passes in here.
//
// How bytes become transfers, as machine.I2C on the rp2 port makes them:
// - START + address for writing: the address is acknowledged if a zero-length probe is (scan does the same).
// - Data bytes are collected and acknowledged; the last one (the controller's STOP flag is set on it) runs the
//   write as one transfer, and its NACK (a device refusing the data) is the controller's TXDATA abort.
// - A repeated START for reading: the collected bytes and the read go to the bus as one transfer, whose
//   result is read out byte by byte. The controller does not say how many bytes it will read, so READ_WINDOW
//   bytes are fetched (more than any register block the firmware reads); past that the bus reads idle 0xff.
// - TX_EMPTY after a STOP, as the chip's level-triggered flag (see onStop).
// - Pins: a device is reached only while the profile's SDA and SCL pins are switched to this I2C block
//   (GPIO function 3), as on a board where the chips are wired to those pins.
import { I2CMode } from "rp2040js";

export const READ_WINDOW = 64;
const GPIO_FUNC_I2C = 3;
const R_TX_EMPTY = 1 << 4; // IC_RAW_INTR_STAT.TX_EMPTY

export function attachI2CDevices(mcu, { id, sda, scl }, bus, port = "rp2") {
  const i2c = mcu.i2c[id];
  let address = null;
  let mode = null;
  let written = [];
  let readBuf = null;
  let readPos = 0;

  const wired = () =>
    [sda, scl].every((pin) => mcu.gpio[pin].functionSelect === GPIO_FUNC_I2C && ((pin >> 1) & 1) === id);

  const attempt = (fn) => {
    try {
      return fn();
    } catch (e) {
      if (e && e.errno) return null; // an I2CError: the device (or the bus) did not acknowledge
      throw e;
    }
  };

  i2c.onStart = () => i2c.completeStart();

  i2c.onConnect = (addr, connectMode) => {
    address = addr;
    mode = connectMode;
    if (!wired()) return i2c.completeConnect(false);
    if (connectMode === I2CMode.Read) {
      const data = Uint8Array.from(written);
      written = [];
      readBuf = attempt(() => bus.transfer(addr, data, READ_WINDOW, port));
      readPos = 0;
      return i2c.completeConnect(readBuf instanceof Uint8Array);
    }
    written = [];
    return i2c.completeConnect(attempt(() => bus.transfer(addr, new Uint8Array(0), 0, port)) !== null);
  };

  i2c.onWriteByte = (value) => {
    written.push(value);
    if (!i2c.stop) return i2c.completeWrite(true); // more bytes, or a repeated START for a read, follow
    const data = Uint8Array.from(written);
    written = [];
    return i2c.completeWrite(attempt(() => bus.transfer(address, data, 0, port)) !== null);
  };

  i2c.onReadByte = () => {
    const value = readBuf && readPos < readBuf.length ? readBuf[readPos] : 0xff;
    readPos += 1;
    i2c.completeRead(value);
  };

  i2c.onStop = () => {
    if (mode === I2CMode.Write && written.length) {
      attempt(() => bus.transfer(address, Uint8Array.from(written), 0, port));
    }
    written = [];
    readBuf = null;
    mode = null;
    i2c.completeStop();
    // TX_EMPTY is a level on the chip (TX FIFO at or below its threshold). rp2040js raises it only after a
    // command it pulled, not after an abort emptied the FIFO, so pico-sdk's i2c_write waited for it in vain
    // after an address NACK (ETIMEDOUT, and the uncleared abort turned the next transfer into EIO).
    if (i2c.txFIFO.itemCount <= i2c.txThreshold) i2c.setInterrupts(R_TX_EMPTY);
  };
}
