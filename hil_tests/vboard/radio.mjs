// Virtual board plugin: the board's Bluetooth LE radio, for the `bluetooth` shim (mpy/bluetooth.py).
//
//   run_vm.mjs --plugin hil_tests/vboard/radio.mjs ...
//
// The VM side of the radio only: what the firmware asks of the stack (advertise, register services, write an
// attribute, notify, disconnect) goes to the supervisor (board_host.mjs) as {t:"ble", msg} and on to the
// harness, whose bridge (pinseal_vboard.radio) plays it on an emulated BlueZ adapter, where the gateway's bleak
// connects as to any BLE peripheral. What happens over the air (a central connects, writes, exchanges the MTU,
// disconnects) comes back as {t:"ble_in", ev} and is queued here until the shim's IRQ task takes it, as the
// stack schedules IRQs on a board.
// Controls: {"status": true} (or {}) -> {events_queued, sent}.
import { parentPort } from "node:worker_threads";

export async function install(mp) {
  const queue = [];
  let wake = null;
  let sent = 0;
  if (parentPort) {
    parentPort.on("message", (m) => {
      if (!m || m.t !== "ble_in") return;
      queue.push(JSON.stringify(m.ev));
      if (wake) {
        const w = wake;
        wake = null;
        w();
      }
    });
  }
  mp.registerJsModule("vboard_ble", {
    // the shim's calls to the stack: one JSON text each, in order
    send: (text) => {
      sent += 1;
      if (parentPort) parentPort.postMessage({ t: "ble", msg: JSON.parse(String(text)) });
    },
    // air events: a Promise the IRQ task awaits, then the events as JSON texts
    wait: () => (queue.length ? Promise.resolve(true) : new Promise((resolve) => (wake = () => resolve(true)))),
    next: () => (queue.length ? queue.shift() : null),
  });
  return { control: () => ({ events_queued: queue.length, sent }) };
}
