# Setup that runs once a boot and then leaves RAM: building the application (the key, the outbox, the
# counters, the sensors, the transport), sizing the signing comb, reading the reset cause. On a stock image
# the firmware's .mpy code lives in the heap, so code that only runs at boot is kept out of the modules the
# running application holds; pinseal.entry forgets this module once the app exists.
import asyncio

# docs/protocol.md §3 status.reset_cause, from machine's constants
_CAUSES = (("PWRON_RESET", 0), ("HARD_RESET", 1), ("WDT_RESET", 2), ("DEEPSLEEP_RESET", 3), ("SOFT_RESET", 4))


def reset_cause():
    try:
        import machine
    except ImportError:
        return 255
    cause = machine.reset_cause()
    for name, code in _CAUSES:
        if getattr(machine, name, None) == cause:
            return code
    return 255


def size_comb(profile):
    """The pure signer's comb table: all of it from ROMFS (executed in place, no heap); loaded from files, as
    many sub-combs as the board's RAM affords (profile ram.comb_subcombs). An image with the native
    Ed25519 has no table, and this does not import the pure signer there."""
    from pinseal.crypto import backend

    if backend.NATIVE:
        return
    ed25519 = backend.impl
    subs = (profile.get("ram") or {}).get("comb_subcombs", 4)
    ed25519.use_comb(4 if ed25519.__file__.startswith("/rom") else subs)


async def make_transport(cfg, profile, kid, outbox):
    """The configured transports (docs/transports.md): one alone, or several behind the link chooser.
    Only the modules of the transports configured are loaded."""
    links = []
    for name in cfg["link"]["transports"]:
        if name == "mqtt":
            from pinseal.transport.mqtt import MqttTransport

            links.append((name, MqttTransport(cfg["mqtt"], kid.hex())))
        elif name == "ble":
            from pinseal.transport.ble import BleTransport
            from pinseal.version import FIRMWARE

            count = outbox.bundle_count
            t = BleTransport(kid, profile.get("id", "unknown"), FIRMWARE, lambda: count() > 0, count)
            links.append((name, t))
        else:
            from pinseal.transport.serial import SerialTransport

            links.append((name, SerialTransport(cfg["serial"], profile.get("uart"))))
        await asyncio.sleep_ms(0)
    if len(links) == 1:
        return links[0][1]
    from pinseal.transport.links import Links

    link = cfg["link"]
    return Links(links, link["link_timeout_s"] * 1000, link["retry_s"] * 1000)


async def create_app(cfg, profile, transport=None):
    """The App, its key loaded (or made, on a first boot without one) in steps.

    Modules are loaded one per task step, and the key files' module dropped before the rest come: on a
    board that loads code into RAM an import leaves garbage as large as the module, and a step of imports
    back to back would need all of it at once (the VM collects only between steps).
    """
    from pinseal import forget, identity

    size_comb(profile)
    # first boot without a key (a config written by hand): make it here, on the device, as enrollment does
    key = await identity.load() if identity.has_key() else await identity.create()
    kids = identity.key_id(key.public_key), identity.key_id(cfg["gateway"]["public_key"])
    del identity
    forget("pinseal.identity")  # key files are read once a boot: ~1.7 KB of code the run never needs
    await asyncio.sleep_ms(0)
    from pinseal.outbox import Outbox

    await asyncio.sleep_ms(0)
    outbox = Outbox(capacity_bytes=cfg["outbox"]["capacity_bytes"])
    await asyncio.sleep_ms(0)
    from pinseal.counter import Counters

    await asyncio.sleep_ms(0)
    # the counter never goes below what the outbox has seen (a lost counter file cannot reuse a seq)
    counters = Counters.open(floor_seq=outbox.max_seq() + 1)
    from pinseal.sampler import Sampler

    await asyncio.sleep_ms(0)
    sampler = Sampler(profile)
    if transport is None:
        transport = await make_transport(cfg, profile, kids[0], outbox)
    # read once, above: ~400 B of dicts the running app would hold for nothing on a 100 KB board
    cfg.pop("serial", None)
    cfg.pop("link", None)
    await asyncio.sleep_ms(0)
    from pinseal.app import App

    await asyncio.sleep_ms(0)
    app = App(cfg, key, kids, counters, outbox, sampler, transport)
    app.cause = reset_cause()
    print("pinseal: device", app.kid.hex(), "boot", app.counters.boot, "reset cause", app.cause)
    return app
