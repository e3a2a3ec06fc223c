# The board RAM model (hil_tests/vboard/ram_model.mjs), seen from MicroPython: run in board mode by
# hil_tests/tests/test_ram_model.py (RAM 100,000 bytes, ceiling 400,000); skipped in a VM without the model.
# Firmware-like code runs in asyncio tasks, as on a board; each `await` is a step boundary where the
# runner collects and checks live bytes.
import asyncio
import gc

import mptest

try:
    import vboard_ram
except ImportError:
    vboard_ram = None


def _board():
    if vboard_ram is None or vboard_ram.ram() == 0:
        raise mptest.SkipTest("needs board mode (run_vm.mjs --ram)")
    return vboard_ram.ram()


async def _settle():
    # A few empty steps: the live figure then reflects what the caller still holds.
    for _ in range(3):
        await asyncio.sleep_ms(0)


async def test_steps_return_to_js_so_per_step_garbage_is_collected():
    ram = _board()

    async def churn(n):
        for _ in range(n):
            junk = bytearray(1024)  # noqa: F841 - garbage by the next step
            await asyncio.sleep_ms(0)

    await _settle()
    base = vboard_ram.reset_peak()
    steps0 = vboard_ram.steps()
    over0 = vboard_ram.over_count()
    await asyncio.create_task(churn(1000))
    steps = vboard_ram.steps() - steps0
    # 1,000 KB of garbage in all is 10 x the board's RAM and 2.5 x the hard ceiling: without a collection
    # at each return to JS it would have raised MemoryError.
    assert steps >= 1000, steps
    grew = vboard_ram.peak() - base
    assert grew < 4096, grew
    assert vboard_ram.live() < ram
    assert vboard_ram.over_count() == over0


async def test_sleep_ms_0_at_top_level_also_returns_to_js():
    _board()
    steps0 = vboard_ram.steps()
    for _ in range(50):
        await asyncio.sleep_ms(0)
    assert vboard_ram.steps() - steps0 >= 50


async def test_live_bytes_over_ram_raise_memoryerror_and_firmware_recovers():
    ram = _board()
    caught = []

    async def logger():
        held = []
        for i in range(150):
            try:
                held.append(bytearray(2000))  # 2 KB a step kept alive: over 100 KB after ~45 steps
                await asyncio.sleep_ms(0)
            except MemoryError as e:
                caught.append((i, str(e)))
                held.clear()  # drop the buffered records, carry on
        return len(held)

    over0 = vboard_ram.over_count()
    kept = await asyncio.create_task(logger())
    assert caught, "no MemoryError although live bytes went over the board's RAM"
    assert "board RAM" in caught[0][1], caught[0]
    # The first MemoryError comes once about RAM / 2 KB buffers are held, not later.
    assert 20 <= caught[0][0] <= ram // 2000 + 5, caught
    assert vboard_ram.over_count() - over0 == len(caught)
    # It recovered: steps after the MemoryError ran and kept allocating.
    assert kept > 0
    await _settle()
    assert vboard_ram.live() < ram


async def test_memoryerror_goes_to_the_task_about_to_resume_and_others_survive():
    _board()
    hog = []
    order = []

    async def grower():
        for _ in range(200):
            hog.append(bytearray(4000))
            await asyncio.sleep_ms(0)

    async def bystander():
        for i in range(200):
            try:
                await asyncio.sleep_ms(0)
            except MemoryError:
                order.append(i)
                hog.clear()  # the bystander frees what it can (here: the shared buffer)

    g = asyncio.create_task(grower())
    b = asyncio.create_task(bystander())
    await asyncio.gather(g, b, return_exceptions=True)
    hog.clear()
    await _settle()
    # Both tasks got to run to the end; whichever resumed while over RAM got the MemoryError.
    assert g.done() and b.done()
    assert vboard_ram.over_count() > 0


async def test_uncaught_memoryerror_ends_only_that_task():
    _board()
    hog = []

    async def leaky():
        while True:
            hog.append(bytearray(3000))
            await asyncio.sleep_ms(0)

    async def healthy(n):
        done = 0
        for _ in range(n):
            await asyncio.sleep_ms(1)
            done += 1
        return done

    t = asyncio.create_task(leaky())
    try:
        await t
    except MemoryError:
        pass
    else:
        raise AssertionError("leaky task should have died with MemoryError")
    hog.clear()
    await _settle()
    assert await asyncio.create_task(healthy(5)) == 5


async def test_runaway_allocation_in_one_step_hits_the_hard_ceiling_and_the_vm_continues():
    ram = _board()
    ceiling = vboard_ram.ceiling()
    assert ceiling == 4 * ram

    def fill_until_memoryerror():
        # A plain function: its frame lives on the Python stack and is gone once it returns, so no stale
        # reference (a generator's frame would keep `chunks` alive as long as its task object lives).
        chunks = []
        try:
            while True:  # never yields: no collection can happen in this step
                chunks.append(bytearray(1000))
        except MemoryError:
            return len(chunks)

    async def runaway():
        return fill_until_memoryerror()

    n1 = await asyncio.create_task(runaway())
    # Stopped by the ceiling (400 KB), not by the board's RAM (checked only between steps) nor never.
    assert ram // 1000 < n1 <= ceiling // 1000, n1
    await _settle()
    assert vboard_ram.live() < ram

    # Not wedged: normal work after it, and the same runaway is stopped at the same place again.
    async def work():
        total = 0
        for _ in range(20):
            buf = bytearray(2000)
            total += len(buf)
            await asyncio.sleep_ms(0)
        return total

    assert await asyncio.create_task(work()) == 40000
    n2 = await asyncio.create_task(runaway())
    assert abs(n2 - n1) <= 8, (n1, n2)


async def test_garbage_inside_one_step_counts_against_the_ceiling():
    _board()
    ceiling = vboard_ram.ceiling()

    async def one_big_step():
        for _ in range(ceiling // 1000 + 50):
            junk = bytearray(1000)  # noqa: F841 - garbage, but no return to JS to collect it
        return "unreachable"

    try:
        await asyncio.create_task(one_big_step())
    except MemoryError:
        pass
    else:
        raise AssertionError("garbage over the ceiling within one step should raise MemoryError")
    gc.collect()  # only a request in this VM; the next return to JS collects
    await _settle()

    async def split_steps():
        for _ in range(ceiling // 1000 + 50):
            junk = bytearray(1000)  # noqa: F841
            await asyncio.sleep_ms(0)
        return "ok"

    assert await asyncio.create_task(split_steps()) == "ok"


async def test_peak_measures_what_a_task_holds_across_yields():
    _board()
    await _settle()
    base = vboard_ram.reset_peak()

    async def sealer():
        table = [bytearray(1000) for _ in range(20)]  # ~20 KB held across yields
        for _ in range(5):
            await asyncio.sleep_ms(0)
        return len(table)

    assert await asyncio.create_task(sealer()) == 20
    grew = vboard_ram.peak() - base
    assert 20000 <= grew <= 24000, grew
    # (What the live heap shows after it depends on stale references: MicroPython's GC is conservative and a
    # finished generator keeps its frame as long as its task object is referenced, on a board too.)


async def test_asyncio_still_schedules_timers_events_and_round_robin():
    _board()
    trace = []

    async def ping(tag, n):
        for i in range(n):
            trace.append(tag + str(i))
            await asyncio.sleep_ms(0)

    await asyncio.gather(ping("a", 3), ping("b", 3))
    assert trace == ["a0", "b0", "a1", "b1", "a2", "b2"], trace

    async def waits():  # wait_for inside a task: at the VM's top level it fails with or without the model
        ev = asyncio.Event()

        async def setter():
            await asyncio.sleep_ms(5)
            ev.set()

        asyncio.create_task(setter())
        await asyncio.wait_for(ev.wait(), 2)

        async def slow():
            await asyncio.sleep_ms(2000)

        try:
            await asyncio.wait_for(slow(), 0.01)
        except asyncio.TimeoutError:
            return ev.is_set()
        raise AssertionError("wait_for should time out")

    assert await asyncio.create_task(waits())


def _burn():
    # Big-integer garbage in one step: small objects fill the heap to the last block at the ceiling.
    x = 3
    while True:
        x = (x * x + 12345678901234567890) % (2**255 - 19)


async def test_memoryerror_at_the_ceiling_never_wedges_the_step_that_caught_it():
    ram = _board()
    rescues0 = vboard_ram.rescues()

    async def main():
        try:
            _burn()
        except MemoryError:
            pass
        junk = bytearray(500)  # the rest of the step still has room (the rescue reserve)
        await asyncio.sleep_ms(0)  # and leaving it works
        return len(junk)

    assert await asyncio.create_task(main()) == 500
    assert vboard_ram.rescues() > rescues0
    await _settle()
    assert vboard_ram.live() < ram


async def test_uncaught_memoryerror_at_the_ceiling_ends_only_that_task():
    _board()

    async def runaway():
        _burn()

    t = asyncio.create_task(runaway())
    try:
        await t
    except MemoryError:
        pass
    else:
        raise AssertionError("the runaway should end with MemoryError")

    async def healthy():
        total = 0
        for _ in range(10):
            total += len(bytearray(2000))
            await asyncio.sleep_ms(0)
        return total

    assert await asyncio.create_task(healthy()) == 20000


async def test_rescue_is_rearmed_so_every_runaway_is_stopped_at_the_ceiling():
    ram = _board()
    assert vboard_ram.rescue() > 0

    def fill():
        chunks = []
        try:
            while True:
                chunks.append(bytearray(1000))
        except MemoryError:
            return len(chunks)

    async def runaway(fn):
        try:
            return fn()
        except MemoryError:
            return -1

    counts = []
    for fn in (_burn, fill, _burn, fill):
        r0 = vboard_ram.rescues()
        counts.append(await asyncio.create_task(runaway(fn)))
        assert vboard_ram.rescues() > r0, counts  # released at each runaway: re-armed in between
        await _settle()
        assert vboard_ram.live() < ram
    assert counts[0] == counts[2] == -1, counts
    assert vboard_ram.ceiling() // 1000 >= counts[1] > ram // 1000, counts
    assert abs(counts[3] - counts[1]) <= 8, counts
