"""The BLE intake (docs/protocol.md §11, docs/gateway.md "BLE"): boards without Wi-Fi, through BlueZ.

One concept a module: `backoff` (per-device retry delays), `scanner` (discovery filtered by the pinseal
service, and its watchdog), `session` (one connection's life, from connect to disconnect, with a fresh
BleakClient each time), `intake` (the `Link` the pipeline answers to: which device to connect to, the
connection slots, the registry check before any connection). bleak is imported only from here, and
this package only when `[ble] enabled = true`.
"""
