# bluetooth for the virtual board: MicroPython's low-level BLE API (the `bluetooth` module of the ESP32 and
# Pico W ports, NimBLE / BTstack), peripheral role, over the radio plugin (radio.mjs, JS module `vboard_ble`).
# The harness's bridge (pinseal_vboard.radio) plays what the firmware asks for on an emulated BlueZ adapter.
#
# It keeps a real stack's limits, so firmware that passes here does not fail on a board for them:
# advertising and scan-response payloads over 31 bytes (legacy advertising) raise OSError(EINVAL); a
# notification longer than the connection's ATT MTU - 3 (or than ATT's 512-byte attribute) raises
# OSError(EINVAL); the MTU is 23 until an exchange (_IRQ_MTU_EXCHANGED), and an exchange settles on the
# lower of the two offers (config(mtu=...)); an attribute holds 20 bytes unless gatts_set_buffer() sized
# it (a longer write from the central is refused, as NimBLE refuses it); calls on a connection that is
# gone raise OSError(ENOTCONN); calls on an inactive radio raise OSError(EPERM). The central role (scan,
# connect, GATT client), L2CAP, pairing and indications are not modelled: they raise OSError(EOPNOTSUPP),
# never pretend to work.
#
# IRQs are delivered by an asyncio task (the stack schedules them on a board; here the events come from
# the host), with the tuples the ports pass: (conn_handle, addr_type, addr) for connect and disconnect,
# (conn_handle, value_handle) for a write, (conn_handle, mtu) for an MTU exchange.
import json

import vboard_ble

FLAG_BROADCAST = 0x0001
FLAG_READ = 0x0002
FLAG_WRITE_NO_RESPONSE = 0x0004
FLAG_WRITE = 0x0008
FLAG_NOTIFY = 0x0010
FLAG_INDICATE = 0x0020

_EPERM = 1
_EINVAL = 22
_ENOTCONN = 107
_EOPNOTSUPP = 95
_MAX_ADV = 31
_DEFAULT_MTU = 23
_DEFAULT_ATTR = 20


class UUID:
    def __init__(self, value):
        if isinstance(value, UUID):
            self._b = value._b
        elif isinstance(value, int):
            if not 0 <= value <= 0xFFFF:
                raise ValueError("invalid UUID")
            self._b = value.to_bytes(2, "little")
        elif isinstance(value, str):
            hexdigits = value.replace("-", "")
            if len(hexdigits) != 32:
                raise ValueError("invalid UUID")
            self._b = bytes(reversed(bytes.fromhex(hexdigits)))
        else:
            b = bytes(value)
            if len(b) not in (2, 4, 16):
                raise ValueError("invalid UUID")
            self._b = b

    def __bytes__(self):
        return self._b

    def __eq__(self, other):
        return isinstance(other, UUID) and other._b == self._b

    def __hash__(self):
        return hash(self._b)

    def text(self):
        h = bytes(reversed(self._b)).hex()
        if len(h) != 32:
            return h
        return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])

    def __repr__(self):
        return "UUID(%s)" % ("0x" + self.text() if len(self._b) == 2 else "'%s'" % self.text())


def _send(**msg):
    vboard_ble.send(json.dumps(msg))


class _BLE:
    def __init__(self):
        self._active = False
        self._irq = None
        self._pump = None
        self._values = {}  # value handle -> bytes
        self._sizes = {}  # value handle -> the most a central may write
        self._conns = {}  # conn handle -> mtu
        self._next_handle = 1
        self._name = "MPY BTSTACK"
        self._mtu = _DEFAULT_MTU

    # -- radio --------------------------------------------------------------------------------------
    def active(self, on=None):
        if on is None:
            return self._active
        on = bool(on)
        if on != self._active:
            self._active = on
            _send(op="active", on=on)
            if not on:
                self._conns = {}
        return self._active

    def _check(self):
        if not self._active:
            raise OSError(_EPERM)

    def config(self, *names, **kw):
        if names:
            if len(names) != 1:
                raise TypeError("must query one param")
            name = names[0]
            if name == "mac":
                self._check()
                return (0, b"\x24\x0a\xc4\x00\x00\x01")
            if name == "gap_name":
                return self._name.encode()
            if name == "mtu":
                return self._mtu
            raise ValueError("unknown config param")
        for key, value in kw.items():
            if key == "gap_name":
                self._name = str(value)
            elif key == "mtu":
                if not 23 <= value <= 517:
                    raise ValueError("invalid MTU")
                self._mtu = value
                _send(op="mtu", mtu=value)
            elif key in ("rxbuf", "io", "le_secure", "mitm", "bond", "addr_mode"):
                pass  # accepted, not modelled
            else:
                raise ValueError("unknown config param")

    def irq(self, handler):
        self._irq = handler
        if self._pump is None:
            import asyncio

            self._pump = asyncio.create_task(self._events())

    async def _events(self):
        while True:
            await vboard_ble.wait()
            while True:
                text = vboard_ble.next()
                if text is None:
                    break
                self._deliver(json.loads(text))

    def _deliver(self, ev):
        kind = ev["ev"]
        conn = ev.get("conn", 0)
        if kind == "connect":
            self._conns[conn] = _DEFAULT_MTU
            self._call(1, (conn, 0, memoryview(bytes.fromhex(ev.get("addr", "000000000000")))))
        elif kind == "disconnect":
            if self._conns.pop(conn, None) is not None:
                self._call(2, (conn, 0, memoryview(bytes.fromhex(ev.get("addr", "000000000000")))))
        elif kind == "write":
            handle = ev["handle"]
            if conn in self._conns and handle in self._values:
                self._values[handle] = bytes.fromhex(ev["hex"])
                self._call(3, (conn, handle))
        elif kind == "mtu":
            if conn in self._conns:
                self._conns[conn] = ev["mtu"]
                self._call(21, (conn, ev["mtu"]))

    def _call(self, event, data):
        if self._irq is not None:
            self._irq(event, data)

    # -- GAP ------------------------------------------------------------------------------------------
    def gap_advertise(self, interval_us, adv_data=None, *, resp_data=None, connectable=True):
        self._check()
        if interval_us is None:
            _send(op="advertise", on=False)
            return
        adv = bytes(adv_data or b"")
        resp = bytes(resp_data or b"")
        if len(adv) > _MAX_ADV or len(resp) > _MAX_ADV:
            raise OSError(_EINVAL)  # legacy advertising: 31 bytes each (NimBLE: BLE_HS_EMSGSIZE)
        _send(
            op="advertise",
            on=True,
            interval_us=interval_us,
            adv=adv.hex(),
            resp=resp.hex(),
            connectable=bool(connectable),
        )

    def gap_disconnect(self, conn_handle):
        self._check()
        if conn_handle not in self._conns:
            return False
        _send(op="disconnect", conn=conn_handle)
        return True

    # -- GATT server ------------------------------------------------------------------------------
    def gatts_register_services(self, services):
        self._check()
        out = []
        described = []
        for service in services:
            uuid, chars = service[0], service[1]
            handles = []
            char_specs = []
            self._next_handle += 1  # the service declaration
            for char in chars:
                cuuid, flags = char[0], char[1]
                self._next_handle += 1  # the characteristic declaration
                handle = self._next_handle
                self._next_handle += 1
                if flags & (FLAG_NOTIFY | FLAG_INDICATE):
                    self._next_handle += 1  # its CCCD
                for _descr in char[2] if len(char) > 2 else ():
                    self._next_handle += 1
                self._values[handle] = b""
                self._sizes[handle] = _DEFAULT_ATTR
                handles.append(handle)
                char_specs.append({"uuid": UUID(cuuid).text(), "flags": flags, "handle": handle})
            out.append(tuple(handles))
            described.append({"uuid": UUID(uuid).text(), "chars": char_specs})
        _send(op="register", services=described)
        return tuple(out)

    def gatts_read(self, value_handle):
        if value_handle not in self._values:
            raise OSError(_EINVAL)
        return self._values[value_handle]

    def gatts_write(self, value_handle, data, send_update=False):
        if value_handle not in self._values:
            raise OSError(_EINVAL)
        if send_update:
            raise OSError(_EOPNOTSUPP)
        data = bytes(data)
        self._values[value_handle] = data
        if len(data) > self._sizes[value_handle]:
            self._sizes[value_handle] = len(data)
        _send(op="value", handle=value_handle, hex=data.hex())

    def gatts_set_buffer(self, value_handle, length, append=False):
        if value_handle not in self._values:
            raise OSError(_EINVAL)
        if append:
            raise OSError(_EOPNOTSUPP)
        self._sizes[value_handle] = length
        _send(op="buffer", handle=value_handle, size=length)

    def gatts_notify(self, conn_handle, value_handle, data=None):
        self._check()
        mtu = self._conns.get(conn_handle)
        if mtu is None:
            raise OSError(_ENOTCONN)
        if value_handle not in self._values:
            raise OSError(_EINVAL)
        data = self._values[value_handle] if data is None else bytes(data)
        if len(data) > min(mtu - 3, 512):
            raise OSError(_EINVAL)  # longer than one ATT notification (or any attribute value) carries
        _send(op="notify", conn=conn_handle, handle=value_handle, hex=data.hex())

    def gatts_indicate(self, *args):
        raise OSError(_EOPNOTSUPP)

    def gap_scan(self, *args, **kw):
        raise OSError(_EOPNOTSUPP)

    def gap_connect(self, *args, **kw):
        raise OSError(_EOPNOTSUPP)

    def gattc_discover_services(self, *args):
        raise OSError(_EOPNOTSUPP)

    def gattc_read(self, *args):
        raise OSError(_EOPNOTSUPP)

    def gattc_write(self, *args):
        raise OSError(_EOPNOTSUPP)

    def gap_pair(self, *args):
        raise OSError(_EOPNOTSUPP)


_ble = None


def BLE():
    global _ble
    if _ble is None:
        _ble = _BLE()
    return _ble
