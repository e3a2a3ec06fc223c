// The microcontroller's own facilities, for the `machine` shim (mpy/machine.py): unique id, reset cause,
// reset and deep sleep, the watchdog, RTC memory, CPU frequency.
//
// A reset cannot return: the worker posts what happened to the supervisor (board_host.mjs), which owns the
// power, the watchdog timer and the RTC domain, then halts this thread until the supervisor replaces it with a
// fresh VM. The watchdog's deadline lives in shared memory and is checked by the supervisor's thread, so an
// endless synchronous loop that never feeds it still ends in a reset, as on a board.
import { parentPort } from "node:worker_threads";

// Float64 slots shared with the supervisor: watchdog deadline (host ms since the epoch, 0 = not started), its
// timeout in host ms, and a halt flag the worker waits on after a reset request.
export const MCU = { wdtDeadline: 0, wdtTimeout: 1 };
export const MCU_SLOTS = 2;
// Reset causes, the values of MicroPython's ESP32 and RP2 ports.
export const CAUSE = { PWRON_RESET: 1, HARD_RESET: 2, WDT_RESET: 3, DEEPSLEEP_RESET: 4, SOFT_RESET: 5 };

const hostNowMs = () => performance.timeOrigin + performance.now();

function halt() {
  const never = new Int32Array(new SharedArrayBuffer(4));
  for (;;) Atomics.wait(never, 0, 0);
}

// ctx.opts.beforeHalt: called before a reset halts the thread (flush output). ctx.opts.mcu: { shared (SharedArrayBuffer of MCU_SLOTS float64), uniqueIdHex, resetCause, rtcMemoryHex, freqHz }
export async function install(mp, ctx) {
  const cfg = ctx.opts.mcu || {};
  const s = new Float64Array(cfg.shared || new SharedArrayBuffer(MCU_SLOTS * 8));
  let rtcMemory = cfg.rtcMemoryHex || "";
  let freqHz = cfg.freqHz || (ctx.board && ctx.board.port === "rp2" ? 125000000 : 160000000);
  const request = (what) => {
    if (!parentPort) throw new Error(`vboard: ${what.t} needs the board host (run the board with pinseal-vboard)`);
    // What the firmware printed before the reset is on the wire before the reset happens.
    if (ctx.opts.beforeHalt) ctx.opts.beforeHalt();
    parentPort.postMessage({ ...what, rtcMemoryHex: rtcMemory });
    halt();
  };
  mp.registerJsModule("vboard_mcu", {
    unique_id_hex: () => cfg.uniqueIdHex || "0123456789ab",
    reset_cause: () => cfg.resetCause || CAUSE.PWRON_RESET,
    board_id: () => (ctx.board ? ctx.board.id : ""),
    port: () => (ctx.board ? ctx.board.port : ""),
    reset: () => request({ t: "reset", cause: CAUSE.SOFT_RESET }),
    deepsleep: (ms) => request({ t: "deepsleep", ms: Number(ms) }),
    wdt_start: (timeoutMs) => {
      s[MCU.wdtTimeout] = ctx.clock.hostDelayMs(Number(timeoutMs));
      s[MCU.wdtDeadline] = hostNowMs() + s[MCU.wdtTimeout];
    },
    wdt_feed: () => {
      if (s[MCU.wdtDeadline] > 0) s[MCU.wdtDeadline] = hostNowMs() + s[MCU.wdtTimeout];
    },
    rtc_memory_get: () => rtcMemory,
    rtc_memory_set: (hex) => {
      rtcMemory = String(hex);
    },
    freq: () => freqHz,
    set_freq: (hz) => {
      freqHz = Number(hz);
    },
  });
}
