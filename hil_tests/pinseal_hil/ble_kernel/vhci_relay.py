"""Inside the guest: the kernel's virtual HCI controller (/dev/vhci) relayed to a virtio-serial port, whose
other end (a unix socket of QEMU's) is a bumble controller on the host.

/dev/vhci takes and gives one HCI packet a read or write, each led by its H4 type byte; the serial port is
a byte stream, so the host's packets are cut at their H4 boundaries (header length fields) before they are
written. Runs with the host's Python (the guest's root is the host's filesystem); standard library only.
"""

from __future__ import annotations

import os
import select
import sys

# H4 packet type -> (header bytes after the type, payload length from the header)
_HEADERS = {
    0x01: (3, lambda h: h[2]),  # command
    0x02: (4, lambda h: int.from_bytes(h[2:4], "little")),  # ACL data
    0x03: (3, lambda h: h[2]),  # SCO data
    0x04: (2, lambda h: h[1]),  # event
    0x05: (4, lambda h: int.from_bytes(h[2:4], "little") & 0x3FFF),  # ISO data
}


def packets(buf: bytearray) -> list[bytes]:
    """Whole H4 packets taken off the front of `buf` (what remains is a packet still arriving)."""
    out = []
    while buf:
        kind = buf[0]
        if kind not in _HEADERS:
            raise ValueError(f"not an H4 packet type: 0x{kind:02x}")
        header, length = _HEADERS[kind]
        if len(buf) < 1 + header:
            break
        total = 1 + header + length(buf[1 : 1 + header])
        if len(buf) < total:
            break
        out.append(bytes(buf[:total]))
        del buf[:total]
    return out


def main() -> int:
    port = next((f"/dev/{p}" for p in sorted(os.listdir("/dev")) if p.startswith("vport")), None)
    if port is None:
        print("vhci relay: no virtio-serial port in /dev", file=sys.stderr)
        return 1
    vhci = os.open("/dev/vhci", os.O_RDWR)
    serial = os.open(port, os.O_RDWR)
    print(f"vhci relay: /dev/vhci <-> {port}", flush=True)
    pending = bytearray()
    while True:
        ready, _, _ = select.select([vhci, serial], [], [])
        if vhci in ready:
            packet = os.read(vhci, 4096)
            if (
                packet[:1] != b"\xff"
            ):  # the driver's vendor packet (its device index) is for us, not the controller
                os.write(serial, packet)
        if serial in ready:
            data = os.read(serial, 4096)
            if not data:
                continue  # nobody at the host end yet
            pending += data
            try:
                for packet in packets(pending):
                    os.write(vhci, packet)
            except ValueError as exc:  # a byte lost on the port: start over at the next read
                print(f"vhci relay: {exc}; dropping {len(pending)} bytes", file=sys.stderr, flush=True)
                pending.clear()


if __name__ == "__main__":
    sys.exit(main())
