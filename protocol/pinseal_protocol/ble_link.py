"""The BLE link (docs/protocol.md §11): a board without Wi-Fi hands its sealed bundles to the gateway.

Pure codec, no radio: the advertisement a device sends and the gateway parses, the info characteristic,
a bundle cut into notifications and put together again (with gap detection, so a lost notification
costs a resend request, never a bundle), and the gateway's writes down (ack, resend request, received).
The gateway's intake (`pinseal_gateway.intake.ble`) and the host's simulated device
(`pinseal_devkit.ble_device`) both use it; the firmware's own codec will be held to the same vectors
(protocol/vectors/ble_link.json).

Every decoder here raises only `BleLinkError` (a ValueError) for bad input, with a message that says what
was wrong: a radio hands over whatever it received.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pinseal_protocol import dcbor
from pinseal_protocol.errors import RejectedMessage

SERVICE_UUID = "1c26420e-5b3a-4f3c-aa36-eaf5a3bf2ada"
INFO_UUID = "1c260001-5b3a-4f3c-aa36-eaf5a3bf2ada"  # read: the device's info map
BUNDLES_UUID = "1c260002-5b3a-4f3c-aa36-eaf5a3bf2ada"  # notify: bundle chunks
DOWN_UUID = "1c260003-5b3a-4f3c-aa36-eaf5a3bf2ada"  # write with response: ack, resend request, received

KID_BYTES = 16  # docs/protocol.md §1
PREFIX_BYTES = 8  # the part of the key id a device advertises
DEFAULT_MTU = 23  # LE's ATT MTU before any exchange
BOARD_MTU = 247  # what a pinseal board offers when a central exchanges MTUs (BlueZ offers 517)
ATT_HEADER = 3  # a notification's opcode and handle
CHUNK_HEADER = 3  # transfer id, chunk index, last chunk index
MAX_ATTRIBUTE = 512  # the largest attribute value ATT allows (Core spec Vol 3 Part F 3.2.9)
MAX_CHUNK_DATA = MAX_ATTRIBUTE - CHUNK_HEADER
MAX_BUNDLE = 4096  # the device's bound on a bundle, as over MQTT and serial (§10)
MAX_CHUNKS = 256  # chunk indices are one byte
MAX_RESEND = 32  # chunk indices in one resend request
MAX_TEXT = 32  # firmware version and board name in the info map
MAX_INFO = 256

DOWN_ACK = 1  # an ack or a signed rejection: the bytes MQTT's ack topic would carry
DOWN_RESEND = 2  # transfer id | the chunk indices the gateway misses
DOWN_RECEIVED = 3  # transfer id: the gateway has the whole bundle (the link accepted it, like a PUBACK)
DOWN_SEND = 4  # empty: the gateway has subscribed; send (a board's stack reports no subscriptions)

AD_FLAGS = 0x01
AD_UUID128_COMPLETE = 0x07
AD_SERVICE_DATA_UUID128 = 0x21
FLAGS_LE_ONLY_GENERAL = 0x06  # LE General Discoverable, BR/EDR not supported
MAX_LEGACY_AD = 31

_SERVICE_UUID_LE = uuid.UUID(SERVICE_UUID).bytes[::-1]  # AD structures carry UUIDs little-endian


class BleLinkError(ValueError):
    """Bytes that are not what §11 says they must be; the message says which rule they broke."""


# -- advertisement --------------------------------------------------------------------------------


def _ad(ad_type: int, data: bytes) -> bytes:
    return bytes((len(data) + 1, ad_type)) + data


def advertisement() -> bytes:
    """The advertising data: flags and the complete list of 128-bit service UUIDs (21 bytes)."""
    return _ad(AD_FLAGS, bytes((FLAGS_LE_ONLY_GENERAL,))) + _ad(AD_UUID128_COMPLETE, _SERVICE_UUID_LE)


def scan_response(kid: bytes) -> bytes:
    """The scan response: service data for the service UUID holding the key id's first 8 bytes (26 bytes)."""
    if len(kid) != KID_BYTES:
        raise BleLinkError(f"a key id is {KID_BYTES} bytes, not {len(kid)}")
    return _ad(AD_SERVICE_DATA_UUID128, _SERVICE_UUID_LE + kid[:PREFIX_BYTES])


def ad_structures(data: bytes) -> list[tuple[int, bytes]]:
    """The (AD type, data) structures of an advertising or scan response payload (Core Vol 3 Part C 11).

    A length byte of 0 ends the significant part (the rest is padding); a structure that runs past the
    end, or a payload over 31 bytes (legacy advertising), is an error.
    """
    if len(data) > MAX_LEGACY_AD:
        raise BleLinkError(f"{len(data)} bytes of advertising data, more than the {MAX_LEGACY_AD} of legacy")
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        length = data[i]
        if length == 0:
            break
        if i + 1 + length > len(data):
            raise BleLinkError(f"an AD structure at byte {i} claims {length} bytes; only {len(data) - i - 1}")
        out.append((data[i + 1], bytes(data[i + 2 : i + 1 + length])))
        i += 1 + length
    return out


@dataclass(frozen=True)
class Advertised:
    """What a scan of one device found: whether it offers the pinseal service, and its key id prefix."""

    has_service: bool
    kid_prefix: bytes | None


def parse_advertising(adv: bytes, scan_rsp: bytes = b"") -> Advertised:
    """The pinseal facts of a device's raw advertisement and scan response (what a firmware scanner sees)."""
    has_service = False
    prefix: bytes | None = None
    for ad_type, data in ad_structures(adv) + ad_structures(scan_rsp):
        if ad_type in (AD_UUID128_COMPLETE, 0x06):  # complete or incomplete list of 128-bit UUIDs
            if len(data) % 16:
                raise BleLinkError(f"a 128-bit UUID list of {len(data)} bytes")
            has_service |= any(data[i : i + 16] == _SERVICE_UUID_LE for i in range(0, len(data), 16))
        elif ad_type == AD_SERVICE_DATA_UUID128:
            if len(data) < 16:
                raise BleLinkError(f"128-bit service data of {len(data)} bytes has no UUID")
            if data[:16] == _SERVICE_UUID_LE:
                prefix = kid_prefix(data[16:])
    return Advertised(has_service, prefix)


def kid_prefix(service_data: bytes) -> bytes:
    """The key id prefix from the service's data (exactly 8 bytes)."""
    if len(service_data) != PREFIX_BYTES:
        raise BleLinkError(
            f"the service data holds a {PREFIX_BYTES}-byte key id prefix, not {len(service_data)}"
        )
    return bytes(service_data)


def prefix_from_service_data(service_data: Mapping[str, bytes]) -> bytes | None:
    """The prefix from a scanner's service data by UUID (bleak's `AdvertisementData.service_data`);
    None when the device sends no data for the pinseal service."""
    data = service_data.get(SERVICE_UUID)
    return None if data is None else kid_prefix(bytes(data))


# -- info characteristic ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Info:
    """The info characteristic: who the device is and how many bundles wait in its outbox."""

    kid: bytes
    firmware: str
    board: str
    outbox_depth: int

    def encode(self) -> bytes:
        """Deterministic CBOR {1: kid, 2: firmware, 3: board, 4: outbox depth}."""
        _check_info(self.kid, self.firmware, self.board, self.outbox_depth)
        return dcbor.encode({1: self.kid, 2: self.firmware, 3: self.board, 4: self.outbox_depth})


def _check_info(kid: Any, firmware: Any, board: Any, depth: Any) -> None:
    if not isinstance(kid, bytes) or len(kid) != KID_BYTES:
        raise BleLinkError(f"info key 1 (key id) must be a {KID_BYTES}-byte string")
    for key, text in ((2, firmware), (3, board)):
        if not isinstance(text, str) or not 0 < len(text.encode("utf-8")) <= MAX_TEXT:
            raise BleLinkError(f"info key {key} must be text of 1 to {MAX_TEXT} bytes")
    if not dcbor.is_uint(depth) or depth > 0xFFFFFFFF:
        raise BleLinkError("info key 4 (outbox depth) must be an unsigned integer below 2**32")


def decode_info(raw: bytes) -> Info:
    """The info map, strictly: deterministic CBOR, exactly keys 1 to 4 with their types."""
    if len(raw) > MAX_INFO:
        raise BleLinkError(f"info of {len(raw)} bytes; at most {MAX_INFO}")
    try:
        value = dcbor.decode(raw)
    except RejectedMessage as exc:
        raise BleLinkError(f"info is not deterministic CBOR: {exc}") from exc
    if not isinstance(value, dict) or any(type(k) is not int for k in value) or set(value) != {1, 2, 3, 4}:
        raise BleLinkError("info must be a map of exactly the keys 1, 2, 3 and 4")
    _check_info(value[1], value[2], value[3], value[4])
    return Info(value[1], value[2], value[3], value[4])


# -- bundle chunks ---------------------------------------------------------------------------------


def chunk_data_size(mtu: int) -> int:
    """Bundle bytes per notification at an ATT MTU: MTU - 3 (ATT) - 3 (chunk header)."""
    size = min(mtu - ATT_HEADER, MAX_ATTRIBUTE) - CHUNK_HEADER
    if size < 1 or size * MAX_CHUNKS < MAX_BUNDLE:
        raise BleLinkError(
            f"an ATT MTU of {mtu} cannot carry a {MAX_BUNDLE}-byte bundle in {MAX_CHUNKS} chunks"
        )
    return size


def chunks(transfer: int, bundle: bytes, mtu: int = DEFAULT_MTU) -> list[bytes]:
    """The notifications that carry `bundle` as transfer `transfer` (0-255), in index order."""
    if not 0 <= transfer <= 0xFF:
        raise BleLinkError(f"transfer id {transfer} is not one byte")
    if not 0 < len(bundle) <= MAX_BUNDLE:
        raise BleLinkError(f"a bundle of {len(bundle)} bytes; 1 to {MAX_BUNDLE}")
    size = chunk_data_size(mtu)
    pieces = [bundle[i : i + size] for i in range(0, len(bundle), size)]
    last = len(pieces) - 1
    return [bytes((transfer, index, last)) + piece for index, piece in enumerate(pieces)]


@dataclass(frozen=True)
class Chunk:
    transfer: int
    index: int
    last: int
    data: bytes


def parse_chunk(raw: bytes) -> Chunk:
    """One notification: header and at least one byte of data, index at most last."""
    if len(raw) <= CHUNK_HEADER:
        raise BleLinkError(f"a chunk of {len(raw)} bytes has no data after its 3-byte header")
    if len(raw) > MAX_ATTRIBUTE:
        raise BleLinkError(f"a chunk of {len(raw)} bytes; an attribute is at most {MAX_ATTRIBUTE}")
    transfer, index, last = raw[0], raw[1], raw[2]
    if index > last:
        raise BleLinkError(f"chunk index {index} after the last index {last}")
    return Chunk(transfer, index, last, bytes(raw[CHUNK_HEADER:]))


# -- down: gateway to device -----------------------------------------------------------------------


@dataclass(frozen=True)
class AckDown:
    """Kind 1: an ack or a signed rejection, byte for byte what MQTT's ack topic carries."""

    message: bytes


@dataclass(frozen=True)
class ResendDown:
    """Kind 2: the gateway misses these chunks of this transfer."""

    transfer: int
    indices: tuple[int, ...]


@dataclass(frozen=True)
class ReceivedDown:
    """Kind 3: the gateway holds this transfer's whole bundle (the device's send() returns on it)."""

    transfer: int


@dataclass(frozen=True)
class SendDown:
    """Kind 4: the gateway has subscribed to the bundles: the device may send. MicroPython's stacks
    report no CCCD writes to the firmware, so a board learns it can notify only from this write."""


Down = AckDown | ResendDown | ReceivedDown | SendDown


def encode_down(message: Down) -> bytes:
    """The bytes of a write to the down characteristic."""
    if isinstance(message, AckDown):
        if not 0 < len(message.message) < MAX_ATTRIBUTE:
            raise BleLinkError(f"an ack of {len(message.message)} bytes does not fit one attribute")
        return bytes((DOWN_ACK,)) + message.message
    if isinstance(message, SendDown):
        return bytes((DOWN_SEND,))
    if not 0 <= message.transfer <= 0xFF:
        raise BleLinkError(f"transfer id {message.transfer} is not one byte")
    if isinstance(message, ResendDown):
        indices = message.indices
        if not 0 < len(indices) <= MAX_RESEND or len(set(indices)) != len(indices):
            raise BleLinkError(f"a resend request names 1 to {MAX_RESEND} distinct chunk indices")
        if any(not 0 <= i <= 0xFF for i in indices):
            raise BleLinkError("chunk indices are one byte")
        return bytes((DOWN_RESEND, message.transfer, *indices))
    return bytes((DOWN_RECEIVED, message.transfer))


def decode_down(raw: bytes) -> Down:
    """A write to the down characteristic (what a device receives)."""
    if not raw:
        raise BleLinkError("an empty write")
    if len(raw) > MAX_ATTRIBUTE:
        raise BleLinkError(f"a write of {len(raw)} bytes; an attribute is at most {MAX_ATTRIBUTE}")
    kind = raw[0]
    if kind == DOWN_ACK:
        if len(raw) < 2:
            raise BleLinkError("an ack write without the ack")
        return AckDown(bytes(raw[1:]))
    if kind == DOWN_RESEND:
        indices = tuple(raw[2:])
        if len(raw) < 3 or len(indices) > MAX_RESEND or len(set(indices)) != len(indices):
            raise BleLinkError(f"a resend request names 1 to {MAX_RESEND} distinct chunk indices")
        return ResendDown(raw[1], indices)
    if kind == DOWN_RECEIVED:
        if len(raw) != 2:
            raise BleLinkError(f"a received write is 2 bytes, not {len(raw)}")
        return ReceivedDown(raw[1])
    if kind == DOWN_SEND:
        if len(raw) != 1:
            raise BleLinkError(f"a send write is 1 byte, not {len(raw)}")
        return SendDown()
    raise BleLinkError(f"unknown down kind {kind}")


def resend_requests(transfer: int, missing: list[int]) -> list[bytes]:
    """`missing` as resend requests of at most 32 indices each, in order."""
    return [
        encode_down(ResendDown(transfer, tuple(missing[i : i + MAX_RESEND])))
        for i in range(0, len(missing), MAX_RESEND)
    ]


# -- reassembly (gateway side) ---------------------------------------------------------------------


def is_newer(transfer: int, than: int) -> bool:
    """Serial number order on one byte (RFC 1982): `transfer` follows `than` by 1 to 127."""
    return 0 < (transfer - than) % 256 < 128


@dataclass
class Fed:
    """What one chunk changed: a whole bundle, and the chunk indices newly found missing."""

    bundle: bytes | None = None
    transfer: int | None = None
    gaps: list[int] = field(default_factory=list)
    ignored: str | None = None
    """Why the chunk was not used: "duplicate", "old" (a finished or superseded transfer), "inconsistent"
    (its last index differs from its transfer's), "oversize"."""


class Reassembler:
    """Puts one connection's notifications back into bundles.

    One transfer at a time (the device sends stop-and-wait): a chunk of a newer transfer id abandons the
    one in progress, a chunk of the current transfer fills its slot, anything older or repeated is
    ignored. A gap (an index missing below one that arrived, or below the last index once it arrived) is
    reported once in `Fed.gaps` so the caller asks for it; `missing()` lists every index still missing
    (after a quiet spell the caller asks for all of them again). A bundle is returned exactly once, only
    when every index 0..last holds data, and never over `MAX_BUNDLE` bytes.
    """

    def __init__(self, max_bundle: int = MAX_BUNDLE) -> None:
        self.max_bundle = max_bundle
        self.transfer: int | None = None
        self._last = 0
        self._parts: dict[int, bytes] = {}
        self._size = 0
        self._asked: set[int] = set()
        self._done = False

    def feed(self, chunk: Chunk) -> Fed:
        if self.transfer is None or (
            chunk.transfer != self.transfer and is_newer(chunk.transfer, self.transfer)
        ):
            self._start(chunk)
        elif chunk.transfer != self.transfer or self._done:
            return Fed(transfer=chunk.transfer, ignored="old")
        elif chunk.last != self._last:
            return Fed(transfer=chunk.transfer, ignored="inconsistent")
        if chunk.index in self._parts:
            return Fed(transfer=chunk.transfer, ignored="duplicate")
        if self._size + len(chunk.data) > self.max_bundle:
            self._done = True  # this transfer can never be a valid bundle: wait for the next one
            self._parts.clear()
            return Fed(transfer=chunk.transfer, ignored="oversize")
        self._parts[chunk.index] = chunk.data
        self._size += len(chunk.data)
        if len(self._parts) == self._last + 1:
            self._done = True
            bundle = b"".join(self._parts[i] for i in range(self._last + 1))
            self._parts.clear()
            return Fed(bundle=bundle, transfer=chunk.transfer)
        upto = self._last + 1 if chunk.index == self._last else chunk.index
        gaps = [i for i in range(upto) if i not in self._parts and i not in self._asked]
        self._asked.update(gaps)
        return Fed(transfer=chunk.transfer, gaps=gaps)

    def _start(self, chunk: Chunk) -> None:
        self.transfer = chunk.transfer
        self._last = chunk.last
        self._parts = {}
        self._size = 0
        self._asked = set()
        self._done = False

    def missing(self) -> list[int]:
        """Every index of the transfer in progress still missing (none when it is complete or unknown)."""
        if self.transfer is None or self._done:
            return []
        self._asked = {i for i in range(self._last + 1) if i not in self._parts}
        return sorted(self._asked)

    @property
    def in_progress(self) -> bool:
        return self.transfer is not None and not self._done
