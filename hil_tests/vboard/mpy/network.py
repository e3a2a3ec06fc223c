# The `network` module of the virtual board: network.WLAN for the station interface as the ESP32 and Pico W
# ports have it, over hil_tests/vboard/net.mjs (JS module `vboard_net`), which holds the Wi-Fi state, the
# networks in range (settings "networks") and the faults ({"wifi": "down"}).
# STAT_* values are the board's port's own (ESP32: 1000/1001/1010 and reasons 200-205; RP2: -3..3); see
# net/wifi.mjs for how each port behaves on a wrong password or a missing AP.
import json

import vboard_net

STA_IF = 0
AP_IF = 1

_S = json.loads(vboard_net.wlan_constants())
STAT_IDLE = _S["IDLE"]
STAT_CONNECTING = _S["CONNECTING"]
STAT_GOT_IP = _S["GOT_IP"]
STAT_NO_AP_FOUND = _S["NO_AP_FOUND"]
STAT_WRONG_PASSWORD = _S["WRONG_PASSWORD"]
STAT_CONNECT_FAIL = _S["CONNECT_FAIL"]
if "BEACON_TIMEOUT" in _S:
    STAT_BEACON_TIMEOUT = _S["BEACON_TIMEOUT"]
    STAT_ASSOC_FAIL = _S["ASSOC_FAIL"]
    STAT_HANDSHAKE_TIMEOUT = _S["HANDSHAKE_TIMEOUT"]
del _S

_ap_active = [False]
_hostname = [None]


def hostname(name=None):
    if name is None:
        return _hostname[0] or json.loads(vboard_net.wlan_config("hostname", None))
    _hostname[0] = str(name)


def country(code=None):
    if code is None:
        return "XX"


class WLAN:
    IF_STA = STA_IF
    IF_AP = AP_IF

    def __init__(self, interface_id=STA_IF):
        if interface_id not in (STA_IF, AP_IF):
            raise ValueError("invalid WLAN interface identifier")
        self._if = interface_id

    def active(self, is_active=None):
        if self._if == AP_IF:
            if is_active is not None:
                _ap_active[0] = bool(is_active)
            return _ap_active[0]
        return vboard_net.wlan_active(None if is_active is None else bool(is_active))

    def connect(self, ssid=None, key=None, *, bssid=None):
        if self._if != STA_IF:
            raise OSError("STA required")
        r = vboard_net.wlan_connect(ssid, key)
        if r:
            raise OSError(r)

    def disconnect(self):
        if self._if == STA_IF:
            vboard_net.wlan_disconnect()

    def status(self, param=None):
        if param is None:
            return vboard_net.wlan_status() if self._if == STA_IF else None
        if param == "rssi":
            if self._if != STA_IF:
                raise OSError("STA required")
            if not vboard_net.wlan_isconnected():
                raise OSError("Wifi Not Connected")
            return -58
        if param == "stations":
            return []
        raise ValueError("unknown status param")

    def isconnected(self):
        if self._if == AP_IF:
            return False
        return vboard_net.wlan_isconnected()

    def ifconfig(self, config=None):
        if config is not None:
            if len(config) != 4:
                raise ValueError("ifconfig needs 4 items")
            return None  # static addressing is accepted; the bridge does not use the board's address
        if self._if == AP_IF:
            return ("192.168.4.1", "255.255.255.0", "192.168.4.1", "0.0.0.0")
        return tuple(json.loads(vboard_net.wlan_ifconfig()))

    def scan(self):
        if not self.active():
            raise OSError("Wifi Not Started")
        mac = self.config("mac")
        return [(s.encode(), mac, 6, -58, 3, False) for s in json.loads(vboard_net.wlan_scan())]

    def config(self, *args, **kwargs):
        if args and kwargs:
            raise TypeError("either pos or kw args are allowed")
        if kwargs:
            for key, value in kwargs.items():
                if key == "mac":
                    continue
                if vboard_net.wlan_config(key, value) == "!unknown config param" and key not in (
                    "pm",
                    "txpower",
                ):
                    raise ValueError("unknown config param")
            return None
        if len(args) != 1:
            raise TypeError("can query only one param")
        key = args[0]
        if key == "mac":
            mac = bytearray(bytes.fromhex(vboard_net.wlan_mac()))
            if self._if == AP_IF:  # the soft-AP MAC is the base MAC + 1 on an ESP32
                mac[5] = (mac[5] + 1) & 0xFF
            return bytes(mac)
        if key in ("pm", "txpower"):
            return 0 if key == "pm" else 20
        r = vboard_net.wlan_config(key, None)
        if r.startswith("!"):
            raise ValueError("unknown config param")
        return json.loads(r)
