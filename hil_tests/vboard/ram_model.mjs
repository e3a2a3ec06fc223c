// The board's RAM, modelled where the MicroPython WebAssembly VM can collect garbage.
//
// This VM collects only when control returns to JavaScript (gc.collect() inside Python merely sets a flag),
// and its heap grows by itself. So the model has two parts:
//
// 1. Stepping + live-bytes limit. The VM's asyncio loop (asyncio.core._run_iter, which normally runs every ready
//    task in one go) is made to run ONE task step per return to JS. Between steps, from a setImmediate callback,
//    the runner collects for real (gc.collect() called from JS: the collection runs as that call returns) and
//    reads the live heap (what gc.mem_alloc() reports; counted fast from the GC's table). If it exceeds the board's RAM, MemoryError is thrown into the task
//    about to resume (its pending `await` raises); the same happens at every step while live bytes stay over.
// 2. Hard ceiling. The GC heap is created at 4 x RAM (plus the rescue reserve, below) and can never grow:
//    WebAssembly memory growth is refused and the C allocator's free space is taken, leaving only holes smaller
//    than the GC heap (which the GC's auto-split never uses: it asks for at least the current heap size) for
//    the JS bridge. Runaway allocation inside one step (live + that step's garbage over the ceiling) raises
//    MemoryError at the allocation.
// 3. Rescue reserve. A step's garbage cannot be collected before the step returns to JS, and leaving a step
//    allocates (the exception object and its traceback, the scheduler, the JS<->Python bridge). When small
//    objects (big-integer temporaries) fill the heap to the last block, every one of those allocations fails;
//    the bridge's own allocations happen outside any exception handler (proxy_c.c converts an uncaught
//    exception to JS after nlr_pop), so MemoryError there ends in nlr_jump_fail(), an endless loop: the VM
//    wedged. So a bytearray of `rescue` bytes is kept allocated in the GC heap (not counted as live). Every
//    failed GC allocation ends with the GC asking the C allocator for a new heap area (gc_try_add_heap), i.e.
//    with a refused memory growth; at a refusal the runner frees the second half of the reserve's blocks
//    directly in the GC's allocation table (the allocation that failed still raises MemoryError: the ceiling
//    holds), so the rest of the step (handler, task end, return to JS) has room. A second exhaustion in the
//    same step frees half of what is left, and so on (the last 1 KB at once). At the next return to JS, after
//    the real collection, the reserve is made whole again (re-armed), so a later runaway is stopped at the same
//    place and rescued again. (Emptied split-heap areas would be freed by the GC, but none is ever added here:
//    the reserve lives inside the one area, so the ceiling needs no re-taking of C-allocator space.)
//
// Python code sees the model through the registered JS module `vboard_ram` (see createRamModel).

// Python installed in the VM (outside firmware/): patches the port's asyncio scheduler.
// - core._schedule_run_iter (also the TaskQueue push callback) asks JS to schedule a tick instead of setTimeout;
// - core.ticks_diff is used only by core._run_iter; within one tick it answers the real value for the head
//   task and then "not due yet" (1 ms), so _run_iter runs exactly one task and returns to JS (its own code for
//   task completion, exceptions and cancellation is left untouched).
export const RAM_SCHED_PY = `
def _vboard_install():
    import time
    import vboard_ram
    from asyncio import core
    from uctypes import addressof

    tdiff = time.ticks_diff
    tms = time.ticks_ms
    run_iter = core._run_iter
    sl = [0, None]  # [ticks_diff calls in this tick, first answer]
    last = [None]  # the task of the last step (for VBOARD_RAM_TRACE)

    def slice_ticks_diff(a, b):
        sl[0] += 1
        if sl[0] == 1 and sl[1] is not None:
            return sl[1]
        return 1

    def schedule(_dt=0):
        t = core._task_queue.peek()
        if t is not None:
            vboard_ram._schedule(max(0, tdiff(t.ph_key, tms())))

    def step(over, live, ram):
        t = core._task_queue.peek()
        if t is None:
            return False
        due = tdiff(t.ph_key, tms())
        ran = due <= 0
        if ran and over:
            msg = "vboard: live heap %d bytes > board RAM %d bytes" % (live, ram)
            if t is core._top_level_task:
                core.TopLevelCoro.reject(MemoryError(msg))
            elif t.data is None and not t.done():
                t.data = MemoryError(msg)
        sl[0] = 0
        sl[1] = max(0, due)
        last[0] = t if ran else None
        try:
            run_iter()
        finally:
            sl[1] = None
        return ran

    # The rescue reserve (see ram_model.mjs): a bytearray whose buffer JS frees when memory growth is refused.
    # Held in this closure only; after a rescue its old header dangles (never used) until re-armed here.
    res = [None]

    def rearm(n):
        res[0] = None
        try:
            b = bytearray(n)
        except MemoryError:
            return 0
        res[0] = b
        return addressof(b)

    def last_task():
        t = last[0]
        return "-" if t is None else repr(t.coro)

    core._schedule_run_iter = schedule
    core.ticks_diff = slice_ticks_diff
    core.new_event_loop()
    return step, rearm, last_task


_vboard_step, _vboard_rearm, _vboard_last_task = _vboard_install()
del _vboard_install
`;

// Take the C allocator's free space, keeping `reserveBytes` as a hole for the JS bridge; refuse memory growth.
// `onRefusal` runs at each refusal (from inside the C allocator: it must not call into the VM).
export function imposeCeiling(M, reserveBytes, onRefusal) {
  let taking = true; // the refusals met while taking the free space are not the VM's
  WebAssembly.Memory.prototype.grow = function refuseGrowth() {
    if (onRefusal && !taking) onRefusal();
    throw new RangeError("vboard: WebAssembly memory growth refused (hard RAM ceiling)");
  };
  const reserve = M._malloc(reserveBytes);
  if (!reserve) throw new Error(`vboard: cannot reserve ${reserveBytes} bytes for the JS bridge`);
  let taken = 0;
  for (let size = 1 << 24; size >= 8; ) {
    if (M._malloc(size)) taken += size;
    else size >>= 1;
  }
  M._free(reserve);
  taking = false;
  return taken;
}

// Fast live-bytes count. gc.mem_alloc() walks the whole heap through gc_info() (about 140 us for a 400 KB heap);
// counting the used entries of the GC's allocation table (2 bits a 16-byte block: free/head/tail/mark) from JS
// takes a few microseconds. The table is found by its descriptor (mp_state_mem_area_t: next, alloc table start,
// its length, other tables, pool start, pool end) around an address known to be in the pool, and the count is
// checked against gc.mem_alloc() at install and every VERIFY_EVERY ticks; any mismatch, or a second heap area,
// falls back to gc.mem_alloc() for good. The same descriptor locates the rescue reserve's blocks.
const BYTES_PER_BLOCK = 16;
const VERIFY_EVERY = 256;
const USED_IN_BYTE = new Uint8Array(256);
for (let b = 0; b < 256; b++) for (let k = 0; k < 8; k += 2) if ((b >> k) & 3) USED_IN_BYTE[b]++;

function locateHeapArea(M, poolAddr) {
  const w = new Uint32Array(M.HEAPU8.buffer);
  const hits = [];
  for (let k = 1; k < w.length - 8; k++) {
    const atb = w[k];
    const len = w[k + 1];
    if (atb === 0 || len === 0 || w[k - 1] !== 0) continue;
    for (let j = 3; j <= 5; j++) {
      const ps = w[k + j];
      const pe = w[k + j + 1];
      if (pe - ps === len * 4 * BYTES_PER_BLOCK && atb + len <= ps && poolAddr >= ps && poolAddr < pe) {
        // gc_last_free_atb_index follows gc_pool_end.
        hits.push({ nextIndex: k - 1, atb, len, poolStart: ps, lastFreeIndex: k + j + 2 });
      }
    }
  }
  return hits.length === 1 ? hits[0] : null;
}

// Allocation-table kinds: 0 free, 1 head, 2 tail, 3 mark (marks exist only during a collection).
const AT_HEAD = 1;
const AT_TAIL = 2;
function atbKind(u8, area, block) {
  return (u8[area.atb + (block >> 2)] >> ((block & 3) * 2)) & 3;
}

function countUsed(M, area) {
  const u8 = M.HEAPU8;
  let n = 0;
  for (let j = area.atb, e = area.atb + area.len; j < e; j++) n += USED_IN_BYTE[u8[j]];
  return n * BYTES_PER_BLOCK;
}

// Counters shared with the watchdog thread (an Int32Array, maybe over a SharedArrayBuffer).
export const STAT = { steps: 0, live: 1, peak: 2, over: 3, ticks: 4 };
export const STAT_LEN = 5;

// Python objects referenced from JS (e.g. by each top-level `await`'s promise) are released only when V8 collects
// their proxies. Before a step is declared over the board's RAM, V8 is collected once (its finalizers run before
// the next setImmediate) so that bridge garbage, which a board would not have, never raises MemoryError.
const V8_GC_MIN_TICKS = 64;
// ... and every V8_GC_SOFT_TICKS anyway: otherwise bridge garbage (each awaited JS promise holds its Python
// objects until V8 collects) piles up to the RAM limit (measured: +90 KB in 30 s of a board sending over MQTT),
// and the live and peak figures the model reports say more about V8's schedule than about the firmware.
const V8_GC_SOFT_TICKS = 64;

// The rescue reserve is released in halves down to this many blocks (1 KB), then whole.
const RESCUE_MIN_BLOCKS = 64;

// Diagnostics: VBOARD_RAM_TRACE=<bytes> prints to stderr each new peak at least that many bytes above the last
// one printed, with the coroutine of the step that left it (where a firmware's high-water mark comes from).
const TRACE_STEP = Number(process.env.VBOARD_RAM_TRACE || 0);

export function createRamModel(mp, { ram, ceiling, rescue, stats, stderr, v8gc, hostDelayMs = (ms) => ms }) {
  const st = stats || new Int32Array(STAT_LEN);
  const M = mp._module;
  let immediate = null;
  let timer = null;
  let stepFn = null;
  let gcCollect = null;
  let memAlloc = null;
  let area = null; // the GC heap's allocation table, when found (fast count)
  let tickErrors = 0;
  let lastV8gc = -V8_GC_MIN_TICKS;
  let overheadMs = 0;
  // Rescue reserve (header comment, part 3).
  const rescueBytes = rescue || 0;
  let heapArea = null; // the GC heap's descriptor, kept for the rescue even if the fast count falls back
  let rearmFn = null;
  let lastTaskFn = null;
  let tracedPeak = 0;
  let rescueHead = -1; // first block of the reserve's buffer, -1 when there is none
  let rescueRun = 0; // blocks it still holds
  let rescueFull = 0; // blocks it held when armed
  let rescues = 0;
  let freedFrom = 0; // blocks freed by the last release, [freedFrom, freedTo)
  let freedTo = 0;
  // Bytes live before the board's own code runs that a real board keeps outside its free heap: the emulation's
  // MicroPython shims (machine, network, asyncio streams, ...), which a board has in C and flash. Set once per
  // boot by setBaseline(); not counted against the board's RAM.
  let baseline = 0;

  const kind = (b) => atbKind(M.HEAPU8, heapArea, b);

  // Free blocks [from, to) in the allocation table; the allocator searches from gc_last_free_atb_index.
  function freeBlocks(from, to) {
    const u8 = M.HEAPU8;
    for (let b = from; b < to; b++) u8[heapArea.atb + (b >> 2)] &= ~(3 << ((b & 3) * 2));
    const w = new Uint32Array(u8.buffer);
    if (w[heapArea.lastFreeIndex] > from >> 2) w[heapArea.lastFreeIndex] = from >> 2;
  }

  // The reserve is still what we allocated: a head and rescueRun - 1 tails.
  function reserveIntact() {
    if (rescueHead < 0 || kind(rescueHead) !== AT_HEAD) return false;
    for (let b = rescueHead + 1; b < rescueHead + rescueRun; b++) if (kind(b) !== AT_TAIL) return false;
    return true;
  }

  // Between steps, after the collection: make the reserve whole again (a JS->Python call). A partly released
  // reserve is freed first (its bytearray is dropped by the Python side). No room: try again at the next tick.
  function rearm() {
    freedFrom = freedTo = 0;
    if (rescueHead >= 0 && rescueRun === rescueFull) return;
    if (rescueHead >= 0 && reserveIntact()) freeBlocks(rescueHead, rescueHead + rescueRun);
    rescueHead = -1;
    let addr = 0;
    try {
      addr = rearmFn(rescueBytes);
    } catch (e) {
      stderr(`vboard: re-arming the rescue reserve raised: ${e && e.message ? e.message : e}`);
    }
    if (!addr) return;
    const head = (addr - heapArea.poolStart) / BYTES_PER_BLOCK;
    if (!Number.isInteger(head) || head < 0 || head >= heapArea.len * 4 || kind(head) !== AT_HEAD) {
      stderr("vboard: rescue reserve not found in the GC heap; a MemoryError at the ceiling may wedge the VM");
      heapArea = null;
      return;
    }
    let run = 1;
    while (head + run < heapArea.len * 4 && kind(head + run) === AT_TAIL) run++;
    rescueHead = head;
    rescueRun = rescueFull = run;
  }

  // Memory growth was refused: a GC allocation failed (it still raises MemoryError: the ceiling holds). Give the
  // rest of the step room: free the second half of what the reserve holds (all of it once it is small), so a
  // second exhaustion within the same step is rescued too, with less. The kept part stays a valid allocation
  // (the bytearray's head). Runs inside the C allocator: memory writes only, no call into the VM.
  // Emscripten tries to grow three times for one failed C allocation, and an allocation too large for the free
  // space exhausts nothing: while at least half of what the last release freed is still free, keep the rest.
  function release() {
    if (rescueHead < 0 || !reserveIntact()) return; // (never free what is not ours)
    let stillFree = 0;
    for (let b = freedFrom; b < freedTo; b++) if (kind(b) === 0) stillFree++;
    if (freedTo > freedFrom && stillFree * 2 >= freedTo - freedFrom) return;
    const keep = rescueRun > RESCUE_MIN_BLOCKS ? rescueRun >> 1 : 0;
    freedFrom = rescueHead + keep;
    freedTo = rescueHead + rescueRun;
    freeBlocks(freedFrom, freedTo);
    if (keep === 0) rescueHead = -1;
    rescueRun = keep;
    rescues++;
  }

  const heldByRescue = () => (rescueHead >= 0 ? rescueRun * BYTES_PER_BLOCK : 0);

  function measureLive(ticks) {
    if (area === null) return memAlloc();
    const fast = countUsed(M, area);
    if (ticks % VERIFY_EVERY !== 0) return fast;
    const exact = memAlloc();
    const oneArea = new Uint32Array(M.HEAPU8.buffer)[area.nextIndex] === 0;
    if (exact !== fast || !oneArea) {
      stderr(`vboard: live-bytes fast count disagrees (${fast} vs gc.mem_alloc() ${exact}); using gc.mem_alloc()`);
      area = null;
    }
    return exact;
  }

  function tick() {
    const t0 = performance.now();
    immediate = null;
    timer = null;
    gcCollect(); // the real collection runs as this call returns to JS
    if (rescueBytes > 0 && heapArea !== null) rearm();
    const ticks = Atomics.load(st, STAT.ticks);
    const live = measureLive(ticks) - heldByRescue() - baseline;
    const due = live > ram ? V8_GC_MIN_TICKS : V8_GC_SOFT_TICKS;
    if (ram > 0 && v8gc && ticks - lastV8gc >= due) {
      lastV8gc = ticks;
      v8gc();
      immediate = setImmediate(tick); // measure again once the proxies' finalizers have run
      overheadMs += performance.now() - t0;
      return;
    }
    Atomics.store(st, STAT.live, live);
    if (live > Atomics.load(st, STAT.peak)) {
      Atomics.store(st, STAT.peak, live);
      if (TRACE_STEP > 0 && live >= tracedPeak + TRACE_STEP && lastTaskFn) {
        tracedPeak = live;
        stderr(`vboard: RAM peak ${live} B (step ${ticks}) after ${lastTaskFn()}`);
      }
    }
    Atomics.add(st, STAT.ticks, 1);
    const over = ram > 0 && live > ram;
    if (over) Atomics.add(st, STAT.over, 1);
    overheadMs += performance.now() - t0;
    try {
      if (stepFn(over, live, ram)) Atomics.add(st, STAT.steps, 1);
    } catch (e) {
      // An exception escaping the scheduler itself (not a task's): report, keep the loop alive.
      tickErrors++;
      stderr(`vboard: asyncio step raised: ${e && e.message ? e.message : e}`);
    }
  }

  function schedule(dt) {
    if (immediate !== null) return; // a tick is already due now; it reschedules by itself
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    if (dt <= 0) immediate = setImmediate(tick);
    else timer = setTimeout(tick, hostDelayMs(dt));
  }

  const module = {
    _schedule: schedule,
    // Board RAM modelled (0 when the model is off) and the hard ceiling, in bytes.
    ram: () => ram,
    ceiling: () => ceiling,
    // Live heap: bytes allocated right after the collection at the last return to JS (before the last step).
    live: () => Atomics.load(st, STAT.live),
    // Highest live heap since the last reset_peak().
    peak: () => Atomics.load(st, STAT.peak),
    // Set the peak to the last live figure; returns that figure (the baseline).
    reset_peak: () => {
      const live = Atomics.load(st, STAT.live);
      Atomics.store(st, STAT.peak, live);
      return live;
    },
    // asyncio task steps run (each one followed by a return to JS and a collection).
    steps: () => Atomics.load(st, STAT.steps),
    // Steps at which live bytes were over the board's RAM (each one threw MemoryError into a task).
    over_count: () => Atomics.load(st, STAT.over),
    // Milliseconds spent between steps (collection and measurement), for benchmarks to subtract.
    overhead_ms: () => overheadMs,
    // "fast" (allocation-table count) or "mem_alloc" (gc.mem_alloc(), slower): how live bytes are read.
    live_method: () => (area === null ? "mem_alloc" : "fast"),
    tick_errors: () => tickErrors,
    // Size of the rescue reserve (bytes; 0 = none), and how many times it was released (each time memory
    // growth was refused, i.e. a GC allocation failed, while it was armed).
    rescue: () => (heapArea === null ? 0 : rescueBytes),
    rescues: () => rescues,
  };

  return {
    module,
    stats: st,
    // Call between steps, after the emulation is loaded and before the board's code runs (see `baseline`).
    setBaseline() {
      gcCollect();
      baseline = 0;
      baseline = measureLive(Atomics.load(st, STAT.ticks)) - heldByRescue();
      return baseline;
    },
    // For imposeCeiling: called at each refused memory growth.
    onRefusal: release,
    // Call after the module is registered as `vboard_ram` and before any task exists.
    install() {
      const gc = mp.pyimport("gc");
      gcCollect = gc.collect;
      memAlloc = gc.mem_alloc;
      mp.runPython(RAM_SCHED_PY);
      stepFn = mp.globals.get("_vboard_step");
      rearmFn = mp.globals.get("_vboard_rearm");
      lastTaskFn = mp.globals.get("_vboard_last_task");
      mp.runPython("_vboard_probe = id(_vboard_step)\ndel _vboard_step, _vboard_rearm, _vboard_last_task");
      const probe = mp.globals.get("_vboard_probe");
      mp.runPython("del _vboard_probe");
      gcCollect();
      area = locateHeapArea(M, probe);
      heapArea = area;
      if (area !== null && countUsed(M, area) !== memAlloc()) area = null;
      if (rescueBytes > 0) {
        if (heapArea === null) stderr("vboard: GC heap layout not found; no rescue reserve (a MemoryError at the ceiling may wedge the VM)");
        else rearm();
      }
    },
  };
}
