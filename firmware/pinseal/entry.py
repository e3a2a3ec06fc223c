# What main.py runs: the configuration check, the safe-mode window, then the watchdog and the application.
# Tools must always be able to reach the REPL: with no /config.json the board stays at the REPL, and for the
# first safe_mode.window_s seconds after boot a Ctrl-C on the serial line (or the safe-mode pin held) stops
# here, before the watchdog exists, so a firmware bug can never lock a board out of reflashing.
import asyncio
import time

from micropython import const

from pinseal import forget

APP = None  # the running application, for a look at its state from the REPL after Ctrl-C


def prepare():
    """The config, or None (the REPL stays) when the board is not provisioned or its config is wrong."""
    from pinseal import config

    try:
        cfg = config.load()
    except config.ConfigError as e:
        print("pinseal:", e, "- fix /config.json; staying at the REPL")
        return None
    finally:
        del config
        forget("pinseal.config")
    if cfg is None:
        print("pinseal: no /config.json: waiting for provisioning at the REPL")
    return cfg


def _safe_pin_held(cfg):
    pin = cfg["safe_mode"]["pin"]
    if pin < 0:
        return False
    from machine import Pin

    return Pin(pin, Pin.IN, Pin.PULL_UP).value() == cfg["safe_mode"]["pin_active"]


async def main(cfg):
    window_ms = cfg["safe_mode"]["window_s"] * 1000
    print("pinseal: starting in %d ms; Ctrl-C for the REPL" % window_ms)
    await asyncio.sleep_ms(window_ms)  # a KeyboardInterrupt here ends asyncio.run: the REPL
    if _safe_pin_held(cfg):
        print("pinseal: safe-mode pin held: staying at the REPL")
        return
    from pinseal import board

    profile = board.load()
    del board
    forget("pinseal.board")
    from pinseal import startup

    deepsleep = cfg["power"]["deepsleep"] and (profile.get("power") or {}).get("deepsleep", False)
    global APP
    app = APP = await startup.create_app(cfg, profile)
    del startup
    forget("pinseal.startup")  # boot-only code: ~1.5 KB of heap on a stock image
    profile = None  # the sampler has what it needs: the rest goes at the next collection
    timeout_s = cfg["watchdog"]["timeout_s"]
    import machine

    wdt = _watchdog(machine, timeout_s * 1000)
    if not deepsleep:
        await app.run(wdt)
        return
    started = time.ticks_ms()
    await app.run_once(send_timeout_ms=min(30000, timeout_s * 500))
    wdt.feed()
    left = app.interval_ms - time.ticks_diff(time.ticks_ms(), started)
    machine.deepsleep(max(1000, left))


# The RP2040's watchdog counts to 8,388 ms at most (the RP2350's to 16,777); machine.WDT raises ValueError
# past its port's limit, which stopped every Pico at boot with the default 60 s. Such a port gets its longest
# timeout that every supported chip has: App.watchdog_loop feeds it every second, and no step of the firmware
# holds the event loop for seconds (the pure-Python verify, the longest, takes ~1 s of a Pico's CPU).
_WDT_PORT_MAX_MS = const(8388)  # underscore + const: folded in, no module global


def _watchdog(machine, timeout_ms):
    try:
        return machine.WDT(timeout=timeout_ms)
    except ValueError:
        print("pinseal: watchdog %d ms is past this board's limit: %d ms" % (timeout_ms, _WDT_PORT_MAX_MS))
        return machine.WDT(timeout=_WDT_PORT_MAX_MS)
