# Joining the Wi-Fi network named in /config.json and staying joined. Boards without a station interface (or a
# config without an SSID, e.g. a wired or serial-only setup) skip it: connected() then answers True so the
# transports try their link themselves.
import asyncio
import time


def _wlan():
    try:
        import network

        return network.WLAN(network.STA_IF)
    except (ImportError, AttributeError):
        return None


def connected():
    wlan = _wlan()
    return True if wlan is None else wlan.isconnected()


async def join(cfg):
    """Join the configured network; False when it did not work within cfg["timeout_s"]."""
    wlan = _wlan()
    if wlan is None or not cfg["ssid"]:
        return True
    if wlan.isconnected():
        return True
    wlan.active(True)
    try:
        wlan.connect(cfg["ssid"], cfg["password"])
    except OSError:
        return False
    deadline = time.ticks_add(time.ticks_ms(), cfg["timeout_s"] * 1000)
    while not wlan.isconnected():
        if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
            return False
        await asyncio.sleep_ms(100)
    return True


async def keep_joined(cfg, check_ms=2000):
    """Rejoin whenever the link drops, with a growing pause (capped) between failed attempts."""
    pause_ms = 1000
    while True:
        if connected():
            pause_ms = 1000
        elif not await join(cfg):
            await asyncio.sleep_ms(pause_ms)
            pause_ms = min(pause_ms * 2, 60000)
            continue
        await asyncio.sleep_ms(check_ms)
