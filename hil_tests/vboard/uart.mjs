// Virtual board plugin: the board's UARTs (machine.UART). The one the board profile wires out (its "uart":
// {"id", "tx", "rx"}) is the board's second serial line: the supervisor (board_host.mjs) carries its bytes to
// a pty of its own, separate from the REPL's, as a USB-UART adapter on those pins would. Other UART ids exist
// (as on the chip) but nothing is wired to them: what they send goes nowhere, they never receive.
//
//   run_vm.mjs --plugin hil_tests/vboard/uart.mjs ...
//
// As on a board, receiving is the driver's ring buffer (`rxbuf` bytes, MicroPython's default 256): bytes that
// arrive while it is full are lost and counted, because a UART has no flow control here. Writing never blocks
// the VM (the bytes leave in the order written); the line's baud rate is recorded, not modelled in time.
// Controls: {"status": true} (or {}) -> {open, id, baudrate, rx_bytes, tx_bytes, rx_dropped, rx_buffered}.
// MicroPython side: mpy/_vb_uart.py (machine.UART), over the JS module `vboard_uart` registered here.
import { parentPort } from "node:worker_threads";

const PORT_UARTS = { esp32: 3, rp2: 2 };
const DEFAULT_RXBUF = 256;
const MAX_RXBUF = 64 * 1024;

export async function install(mp, ctx) {
  const board = ctx.board || {};
  const wired = board.uart ? board.uart.id : -1;
  const count = PORT_UARTS[board.port] || 2;
  const state = { open: false, baudrate: 0, rxbuf: DEFAULT_RXBUF, rx: [], rxLen: 0, rxBytes: 0, txBytes: 0, dropped: 0 };
  const out = [];
  let flushQueued = false;

  const flush = () => {
    flushQueued = false;
    if (!out.length) return;
    const data = Buffer.concat(out.splice(0));
    if (parentPort) parentPort.postMessage({ t: "uart", data });
  };

  const receive = (data) => {
    if (!state.open) return; // nothing listens on the pins yet: lost, as on the wire
    state.rxBytes += data.length;
    const room = state.rxbuf - state.rxLen;
    const take = Math.max(0, Math.min(room, data.length));
    if (take < data.length) state.dropped += data.length - take;
    if (take > 0) {
      state.rx.push(Buffer.from(data.subarray(0, take)));
      state.rxLen += take;
    }
  };
  if (parentPort) {
    parentPort.on("message", (m) => {
      if (m && m.t === "uart_in") receive(Buffer.from(m.data));
    });
  }

  const take = (n) => {
    const want = Math.min(n < 0 ? state.rxLen : n, state.rxLen);
    const parts = [];
    let got = 0;
    while (got < want) {
      const head = state.rx[0];
      const k = Math.min(head.length, want - got);
      parts.push(head.subarray(0, k));
      if (k === head.length) state.rx.shift();
      else state.rx[0] = head.subarray(k);
      got += k;
    }
    state.rxLen -= got;
    return Buffer.concat(parts);
  };

  mp.registerJsModule("vboard_uart", {
    count: () => count,
    wired: () => wired,
    open: (id, baudrate, rxbuf) => {
      if (Number(id) !== wired) return;
      state.open = true;
      state.baudrate = Number(baudrate);
      state.rxbuf = Math.max(32, Math.min(MAX_RXBUF, Number(rxbuf) || DEFAULT_RXBUF));
    },
    close: (id) => {
      if (Number(id) !== wired) return;
      state.open = false;
      state.rx = [];
      state.rxLen = 0;
    },
    any: (id) => (Number(id) === wired ? state.rxLen : 0),
    read: (id, n) => (Number(id) === wired ? take(Number(n)).toString("hex") : ""),
    write: (id, hex) => {
      const data = Buffer.from(String(hex), "hex");
      if (Number(id) !== wired || !state.open) return data.length;
      state.txBytes += data.length;
      out.push(data);
      if (!flushQueued) {
        flushQueued = true;
        setImmediate(flush);
      }
      return data.length;
    },
  });

  return {
    control: () => ({
      open: state.open,
      id: wired,
      baudrate: state.baudrate,
      rx_bytes: state.rxBytes,
      tx_bytes: state.txBytes,
      rx_dropped: state.dropped,
      rx_buffered: state.rxLen,
    }),
  };
}
