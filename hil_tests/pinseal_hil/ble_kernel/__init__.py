"""`make test-ble-kernel`: the gateway's BLE intake on the real Linux Bluetooth stack and bluetoothd.

A small QEMU guest (Debian's kernel, which has `hci_vhci`; a busybox initramfs; the host's filesystem over
9p, read-only) runs the real bluetoothd, Mosquitto and `pinseal-gateway` with BLE enabled. The board runs on
the host: the unmodified firmware on a virtual board whose radio is a bumble host stack
(`pinseal_vboard.radio_bumble`), its emulated controller linked to a second one that the guest's kernel
drives through /dev/vhci, relayed over a virtio-serial port. The kernel, bluetoothd, D-Bus and bleak in
the guest are exactly what a Raspberry Pi gateway runs.

  guest_image   the kernel and initramfs, built from Debian's packages (cached in build/ble-kernel)
  guest         QEMU: boot, shares, the HCI port, the console log
  in_guest      what runs inside (dbus, bluetoothd, Mosquitto, the gateway), started by the init
  vhci_relay    inside the guest: /dev/vhci <-> the virtio-serial port, one HCI packet a write
"""
