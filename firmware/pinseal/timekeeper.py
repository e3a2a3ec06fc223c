# Where a reading's time comes from (docs/protocol.md §3, time-source): NTP on Wi-Fi boards, otherwise the
# gateway's signed ack time, otherwise seconds since boot. The wall clock is the board's RTC (time.time());
# whichever source set it last is what readings say. NTP wins over ack time while it keeps succeeding.
import time

from micropython import const

NONE = const(0)
NTP = const(1)
GATEWAY = const(2)
# Seconds between the Unix epoch and this port's epoch (MicroPython ports use 1970 or 2000). A port without
# an RTC has no gmtime (QEMU's ports/qemu): its readings keep seconds since boot (source NONE) until an ack
# sets a clock, so the offset is never used there, but the app must still import.
_EPOCH_OFFSET = 0 if not hasattr(time, "gmtime") or time.gmtime(0)[0] == 1970 else 946684800


def unix_now():
    return time.time() + _EPOCH_OFFSET


def set_unix_time(unix_s):
    import machine

    t = time.gmtime(unix_s - _EPOCH_OFFSET)  # (year, month, mday, hour, minute, second, weekday, yearday)
    machine.RTC().datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))


class TimeKeeper:
    def __init__(self, ntp_host="pool.ntp.org", resync_s=21600):
        self.source = NONE
        self._ntp_host = ntp_host
        self._resync_ms = resync_s * 1000
        self._ntp_at = None
        self._boot_ms = time.ticks_ms()
        self.ntp_failures = 0

    def uptime_s(self):
        return time.ticks_diff(time.ticks_ms(), self._boot_ms) // 1000

    def now(self):
        """(time_s, source) for a reading taken now."""
        if self.source == NONE:
            return self.uptime_s(), NONE
        return unix_now(), self.source

    def ntp_due(self):
        return self._ntp_at is None or time.ticks_diff(time.ticks_ms(), self._ntp_at) >= self._resync_ms

    def sync_ntp(self):
        """Set the RTC over NTP; False (and the source unchanged) when that failed."""
        try:
            import ntptime

            ntptime.host = self._ntp_host
            ntptime.settime()
        except (OSError, ImportError, OverflowError, ValueError):
            self.ntp_failures += 1
            return False
        self.source = NTP
        self._ntp_at = time.ticks_ms()
        return True

    def from_ack(self, unix_s):
        """A verified ack's time: the clock unless NTP is keeping it."""
        if self.source == NTP:
            return
        set_unix_time(unix_s)
        self.source = GATEWAY
