// The Chips-API host itself: what it tells a chip author when a chip does not fit, and the chip's log.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { ChipError, ChipHost, importedMemoryMinPages } from "./chip_host.mjs";
import { chipWasm } from "./wasm_chips.mjs";

const wasmFile = (name, bytes) => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "chip-host-")), name);
  fs.writeFileSync(file, Uint8Array.from(bytes));
  return file;
};
const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
const str = (s) => [s.length, ...Buffer.from(s)];

test("printf reaches the log through WASI fd_write; attributes from the diagram override defaults", () => {
  const lines = [];
  const host = new ChipHost({ wasm: chipWasm("sht3x"), attrs: { address: 0x45 }, nowNs: () => 0, log: (l) => lines.push(l) });
  assert.deepEqual(lines, ["sht3x: ready at 0x45"]);
  assert.equal(host.devices[0].address, 0x45);
  assert.equal(host.pins.map((p) => p.name).sort().join(","), "SCL,SDA");
});

test("the imported memory's minimum is read from the import section", () => {
  // (import "env" "memory" (memory 3))
  const imports = [1, ...str("env"), ...str("memory"), 0x02, 0x00, 0x03];
  assert.equal(importedMemoryMinPages(Uint8Array.from([...HEADER, 0x02, imports.length, ...imports])), 3);
  assert.ok(importedMemoryMinPages(fs.readFileSync(chipWasm("bme280"))) >= 1);
});

test("a chip importing what the host lacks, or a missing .wasm, is a clear error", () => {
  const types = [0x01, 0x04, 0x01, 0x60, 0x00, 0x00];
  const imports = [1, ...str("env"), ...str("uartInit"), 0x00, 0x00];
  const file = wasmFile("uart.chip.wasm", [...HEADER, ...types, 0x02, imports.length, ...imports]);
  assert.throws(() => new ChipHost({ wasm: file, nowNs: () => 0 }), (e) => e instanceof ChipError && /env\.uartInit/.test(e.message));
  assert.throws(() => new ChipHost({ wasm: "/nonexistent/x.chip.wasm", nowNs: () => 0 }), /make wokwi-chips/);
});
