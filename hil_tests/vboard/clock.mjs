// The board's clock, controllable from tests: wall-clock offset, jumps, and speed-up.
//
// A board has two clocks that matter: the monotonic tick counter (time.ticks_ms, what asyncio schedules by;
// it starts at 0 on boot and never jumps) and the wall clock (time.time, the RTC; set by NTP, ntptime or
// machine.RTC, and on an ESP32 or Pico kept across machine.reset()/deepsleep but lost with the power).
// The state lives in a SharedArrayBuffer so that the supervisor (main thread) can jump or speed up the clock
// of a VM running in a worker. Times are taken from performance.timeOrigin + performance.now(), which agree
// across threads.
//
// Slots of the shared Float64Array: the host time of the anchor, the board's wall time (ms since 1970) and
// ticks at the anchor, and the speed (board ms per host ms). Every change re-anchors, so changing the speed
// never makes either clock jump.
const HOST_AT = 0;
const WALL_AT = 1;
const TICKS_AT = 2;
const SPEED = 3;
export const CLOCK_SLOTS = 4;

const hostNowMs = () => performance.timeOrigin + performance.now();

// shared: a SharedArrayBuffer of CLOCK_SLOTS float64 (a new one when absent: wall clock = host clock, speed 1).
export function createClock(shared = null) {
  const buffer = shared || new SharedArrayBuffer(CLOCK_SLOTS * 8);
  const s = new Float64Array(buffer);
  if (!shared) {
    s[HOST_AT] = hostNowMs();
    s[WALL_AT] = Date.now();
    s[TICKS_AT] = 0;
    s[SPEED] = 1;
  }
  const elapsed = () => (hostNowMs() - s[HOST_AT]) * s[SPEED];
  const wallMs = () => s[WALL_AT] + elapsed();
  const ticksMs = () => s[TICKS_AT] + elapsed();
  const reanchor = () => {
    const now = hostNowMs();
    const e = (now - s[HOST_AT]) * s[SPEED];
    s[WALL_AT] += e;
    s[TICKS_AT] += e;
    s[HOST_AT] = now;
  };
  const clock = {
    buffer,
    wallMs,
    ticksMs,
    speed: () => s[SPEED],
    // Set the wall clock (ms since 1970); ticks are untouched, as on a board whose RTC is set.
    setWallMs(ms) {
      reanchor();
      s[WALL_AT] = ms;
    },
    // Move the wall clock by deltaMs (an NTP step, a wrong RTC): ticks are untouched.
    jumpMs(deltaMs) {
      reanchor();
      s[WALL_AT] += deltaMs;
    },
    // Run both clocks `factor` times faster than the host's (asyncio sleeps shrink accordingly).
    setSpeed(factor) {
      if (!(factor > 0)) throw new Error(`clock speed must be > 0, got ${factor}`);
      reanchor();
      s[SPEED] = factor;
    },
    // A restart (machine.reset, deepsleep wake): ticks start again from 0, the wall clock runs on.
    restartTicks() {
      reanchor();
      s[TICKS_AT] = 0;
    },
    // Host milliseconds until the board's ticks advance by boardMs (for timers).
    hostDelayMs: (boardMs) => boardMs / s[SPEED],
    // What MicroPython code sees (registered as the JS module `vboard_clock`).
    module: {
      wall_ms: () => wallMs(),
      ticks_ms: () => Math.floor(ticksMs()),
      set_wall_ms: (ms) => clock.setWallMs(Number(ms)),
      speed: () => s[SPEED],
    },
  };
  return clock;
}

// Installed in the VM when the board clock is on: the time module reads the board clock. time.time() is an
// int as on ESP32 and RP2 builds (this port's is a float). Wrapping ticks keeps the ports' semantics:
// ticks_ms wraps at 2**30 (ticks_diff handles it).
export const CLOCK_PY = `
def _vboard_clock():
    import time, vboard_clock
    wall_ms = vboard_clock.wall_ms
    tick_ms = vboard_clock.ticks_ms
    PERIOD = 1 << 30
    localtime = time.localtime
    gmtime = time.gmtime

    def ticks_ms():
        return tick_ms() & (PERIOD - 1)

    def ticks_us():
        return (tick_ms() * 1000) & (PERIOD - 1)

    def now_s():
        return int(wall_ms() // 1000)

    def sleep_ms(ms):
        end = tick_ms() + ms
        while tick_ms() < end:
            pass

    time.time = now_s
    time.time_ns = lambda: int(wall_ms()) * 1000000
    time.ticks_ms = ticks_ms
    time.ticks_us = ticks_us
    time.ticks_cpu = ticks_us
    time.localtime = lambda secs=None: localtime(now_s() if secs is None else secs)
    time.gmtime = lambda secs=None: gmtime(now_s() if secs is None else secs)
    time.sleep_ms = sleep_ms
    time.sleep_us = lambda us: sleep_ms(us // 1000)
    time.sleep = lambda s: sleep_ms(int(s * 1000))

_vboard_clock()
del _vboard_clock
`;
