"""The devices waiting to be connected to: by key id prefix, each with the addresses it was reported at.

A prefix is not an identity: the key id is, and only the info read after connecting confirms it. Two
radios can advertise one prefix (an impostor copying a registered device's advertisement, or a device
that changed its address), so each prefix keeps its few latest addresses, and they are tried in the order
they were first reported: a radio refused (or failing) at one address, and back at a new one, queues
behind the others, so an impostor cannot starve the device it imitates.

A report makes an address a candidate. The address a session failed on is kept as a retry (the device
may still be there), tried only when no freshly reported address of its prefix waits, and only until
`ttl_s` after it was last reported: a device that left is not tried for ever. A session that drains the
device drops its prefix's retries (they were its old addresses).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bleak.backends.device import BLEDevice

ADDRESSES_PER_PREFIX = 4


@dataclass(frozen=True)
class Candidate:
    device: BLEDevice
    first_seen: float
    last_seen: float
    retry: bool = False
    """Kept after a session that did not drain the device, not reported since."""


class Candidates:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._by_prefix: dict[bytes, dict[str, Candidate]] = {}

    def reported(self, prefix: bytes, device: BLEDevice, now: float) -> None:
        addresses = self._by_prefix.setdefault(prefix, {})
        waiting = addresses.get(device.address)
        if waiting is not None and not waiting.retry:
            addresses[device.address] = replace(waiting, device=device, last_seen=now)
        else:
            addresses[device.address] = Candidate(device, now, now)
        while len(addresses) > ADDRESSES_PER_PREFIX:
            del addresses[min(addresses, key=lambda a: addresses[a].last_seen)]

    def retry(self, prefix: bytes, candidate: Candidate) -> None:
        """After a failed session: try `candidate`'s address again, unless it was reported anew meanwhile."""
        self._by_prefix.setdefault(prefix, {}).setdefault(
            candidate.device.address, replace(candidate, retry=True)
        )

    def waiting(self, now: float) -> list[bytes]:
        """The prefixes with a candidate, the longest waiting first; expired retries are dropped."""
        order: list[tuple[float, bytes]] = []
        for prefix in list(self._by_prefix):
            addresses = self._by_prefix[prefix]
            for address in [a for a, c in addresses.items() if c.retry and now - c.last_seen > self.ttl_s]:
                del addresses[address]
            if not addresses:
                del self._by_prefix[prefix]
                continue
            order.append((min(c.first_seen for c in addresses.values()), prefix))
        return [prefix for _, prefix in sorted(order)]

    def take(self, prefix: bytes) -> Candidate:
        """The address of `prefix` to connect to now (it leaves the list): the first reported of the fresh
        ones, else the latest retry."""
        addresses = self._by_prefix[prefix]
        fresh = [a for a, c in addresses.items() if not c.retry]
        if fresh:
            address = min(fresh, key=lambda a: addresses[a].first_seen)
        else:
            address = max(addresses, key=lambda a: addresses[a].last_seen)
        chosen = addresses.pop(address)
        if not addresses:
            del self._by_prefix[prefix]
        return chosen

    def drained(self, prefix: bytes) -> None:
        """A session emptied the device's outbox: its failed addresses are not worth trying."""
        addresses = self._by_prefix.get(prefix, {})
        for address in [a for a, c in addresses.items() if c.retry]:
            del addresses[address]
        if not addresses:
            self._by_prefix.pop(prefix, None)

    def drop(self, prefix: bytes) -> None:
        self._by_prefix.pop(prefix, None)

    def addresses(self, prefix: bytes) -> list[str]:
        """The addresses waiting for `prefix`, in the order they would be tried."""
        addresses = self._by_prefix.get(prefix, {})
        return sorted(addresses, key=lambda a: (addresses[a].retry, addresses[a].first_seen))

    def __contains__(self, prefix: bytes) -> bool:
        return prefix in self._by_prefix
