# micropython-lib's `ntptime` for the virtual board: time() asks "NTP" (the host's clock plus the settings'
# ntp.offset_s) and settime() sets the board's wall clock (time.time(), RTC) from it. Faults as on a board:
# Wi-Fi not connected and a host name to resolve -> getaddrinfo's OSError (-202 ESP32, -2 Pico W) at once;
# no answer (settings {"ntp": {"fail": true}}, or an address host with Wi-Fi down) -> OSError(ETIMEDOUT)
# after `timeout` seconds, during which the board is blocked as in socket.recvfrom().
import errno
import time as _time

import vboard_net

host = "pool.ntp.org"
timeout = 1


def _is_ipv4(name):
    parts = name.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


def time():
    if not _is_ipv4(host) and not vboard_net.wlan_isconnected():
        raise OSError(-202 if vboard_net.port() == "esp32" else -2)
    t = vboard_net.ntp_time()
    if isinstance(t, str):
        _time.sleep_ms(int(timeout * 1000))
        raise OSError(errno.ETIMEDOUT)
    return int(t)


def settime():
    t = time()
    vboard_net.ntp_set_wall_s(t)
