"""A BlueZ bench without radios: BlueZoo (an emulated BlueZ) on a private D-Bus, and peripherals on it.

`bus` starts the private bus and BlueZoo with N adapters; `peripheral` registers a GATT application and an
LE advertisement on one adapter, as a device's BLE stack would on real BlueZ. The gateway's BLE intake runs
against it unmodified (bleak's BlueZ backend), and the virtual board's radio can bridge to it later.
Nothing here knows the pinseal protocol: device behaviour lives in pinseal_devkit.ble_device.
"""
