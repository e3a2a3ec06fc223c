// The Pico's QSPI flash as a host file, written through as the firmware erases and programs it.
//
// rp2040js keeps flash in a Uint8Array and does not model the flash chip's commands: the bootrom's
// flash_range_erase / flash_range_program (which pico-sdk, and so MicroPython's rp2.Flash under littlefs,
// call) clock bytes into the SSI and nothing changes. So both ROM routines are replaced by a breakpoint in our
// copy of the bootrom, and the breakpoint does what the chip would: erase = 0xff over the sectors, program =
// old AND new (NOR flash only clears bits), then returns to the caller. Each operation is written to the host
// file at once (pwrite of the bytes it changed), in the order the firmware made them, so a SIGKILL of the
// simulator leaves the file as a power cut leaves a chip: every completed operation is there, none half-done
// is. That is the order littlefs relies on for its power-loss safety.
import fs from "node:fs";

export const FLASH_BYTES = 2 * 1024 * 1024; // RPI_PICO: W25Q16, 2 MB
const SECTOR = 4096;
const SRAM_START = 0x20000000;
// rom_table_code(c1, c2) = c1 | c2 << 8 (RP2040 datasheet 2.8.3)
const ROM_CODE = (c1, c2) => c1.charCodeAt(0) | (c2.charCodeAt(0) << 8);
const BKPT_ERASE = 0xe1;
const BKPT_PROGRAM = 0xe2;

function romFunction(bootrom, code) {
  const half = (addr) => (bootrom[addr >>> 2] >>> ((addr & 2) * 8)) & 0xffff;
  for (let entry = half(0x14); half(entry) !== 0; entry += 4) {
    if (half(entry) === code) return half(entry + 2) & ~1;
  }
  throw new Error(`bootrom: no function ${code.toString(16)} in its table`);
}

function patchHalf(bootrom, addr, value) {
  const shift = (addr & 2) * 8;
  const word = addr >>> 2;
  bootrom[word] = ((bootrom[word] & ~(0xffff << shift)) | (value << shift)) >>> 0;
}

export class FlashStore {
  // path: the host file (created, FLASH_BYTES of 0xff, when missing). Call before loading the UF2 on top.
  constructor(mcu, path) {
    this.mcu = mcu;
    this.path = path;
    this.erases = 0;
    this.programs = 0;
    if (fs.existsSync(path)) {
      const data = fs.readFileSync(path);
      if (data.length !== FLASH_BYTES) throw new Error(`${path}: ${data.length} bytes, a Pico's flash is ${FLASH_BYTES}`);
      mcu.flash.set(data, 0);
    } else {
      mcu.flash.fill(0xff, 0, FLASH_BYTES);
      fs.writeFileSync(path, mcu.flash.subarray(0, FLASH_BYTES), { mode: 0o600 });
    }
    this.fd = fs.openSync(path, "r+");
  }

  // The firmware image itself (the UF2's blocks) goes into the file too: what is on the chip is on the file.
  writeImage(offset, bytes) {
    this.mcu.flash.set(bytes, offset);
    fs.writeSync(this.fd, bytes, 0, bytes.length, offset);
  }

  // Replace the bootrom's erase and program routines by breakpoints; returns the previous onBreak handler's
  // job to the caller for any other breakpoint.
  hookBootrom(otherBreak = () => {}) {
    const { mcu } = this;
    const erase = romFunction(mcu.bootrom, ROM_CODE("R", "E"));
    const program = romFunction(mcu.bootrom, ROM_CODE("R", "P"));
    patchHalf(mcu.bootrom, erase, 0xbe00 | BKPT_ERASE);
    patchHalf(mcu.bootrom, program, 0xbe00 | BKPT_PROGRAM);
    mcu.onBreak = (code) => {
      const core = mcu.core;
      const [r0, r1, r2] = core.registers;
      if (code === BKPT_ERASE) this.erase(r0, r1);
      else if (code === BKPT_PROGRAM) this.program(r0, r2, r1);
      else return otherBreak(code);
      core.PC = core.LR & ~1; // return from the ROM routine (bx lr)
    };
  }

  // flash_range_erase(addr, count, block_size, block_cmd): whole 4 KB sectors from addr.
  erase(offset, count) {
    const start = offset & ~(SECTOR - 1);
    const end = Math.min(FLASH_BYTES, (offset + count + SECTOR - 1) & ~(SECTOR - 1));
    this.mcu.flash.fill(0xff, start, end);
    fs.writeSync(this.fd, this.mcu.flash, start, end - start, start);
    this.erases += 1;
  }

  // flash_range_program(addr, data, count)
  program(offset, count, dataAddr) {
    const { mcu } = this;
    const end = Math.min(FLASH_BYTES, offset + count);
    for (let i = offset; i < end; i++) {
      const src = dataAddr + (i - offset);
      const byte = src >= SRAM_START ? mcu.sram[src - SRAM_START] : mcu.readUint8(src);
      mcu.flash[i] &= byte;
    }
    fs.writeSync(this.fd, mcu.flash, offset, end - offset, offset);
    this.programs += 1;
  }

  close() {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}
