# A test runner small enough for MicroPython: discovers test_* functions in a module, runs them
# (awaiting coroutines on the VM's asyncio loop), and prints one line a test plus a summary that
# the host-side pytest bridge (hil_tests/tests/test_firmware_in_vm.py) reads.
import sys
import time


class SkipTest(Exception):
    pass


def _is_coroutine(obj):
    return type(obj).__name__ in ("generator", "coroutine")


async def run_module(name, only=None):
    module = __import__(name)
    passed = failed = skipped = 0
    names = sorted(n for n in dir(module) if n.startswith("test_"))
    for test_name in names:
        if only and test_name != only:
            continue
        fn = getattr(module, test_name)
        t0 = time.ticks_ms()
        try:
            result = fn()
            if _is_coroutine(result):
                await result
        except SkipTest as e:
            skipped += 1
            print("SKIP", test_name, e)
            continue
        except Exception as e:  # report every failure, keep running the rest
            failed += 1
            print("FAIL", test_name)
            sys.print_exception(e, sys.stdout)
            continue
        passed += 1
        print("PASS", test_name, time.ticks_diff(time.ticks_ms(), t0), "ms")
    print("mptest: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return failed
