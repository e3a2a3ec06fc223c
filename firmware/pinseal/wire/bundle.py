# The bundle a device sends (docs/protocol.md §3): a payload map with keys 1..7, sealed once into a
# COSE_Sign1 by the device's key. Its bytes are then stored and resent unchanged until acked, so
# everything here is deterministic: the same inputs always give the same bytes.
import hashlib

from micropython import const

from pinseal.wire import WireError, cose, senml
from pinseal.wire.cbor import Encoder

VERSION = const(1)
MAX_BUNDLE_SIZE = const(2048)
_PREV_SIZE = const(16)
_STATUS_LEN = const(5)
_TIME_SOURCES = const(3)  # 0 none, 1 NTP, 2 gateway ack time


def _check_uint(value, what):
    if type(value) is not int or value < 0:
        raise ValueError("bundle: %s must be an int >= 0" % what)


def payload(boot, seq, prev, status, time_source, readings):
    """The bundle payload's bytes: {1: 1, 2: boot, 3: seq, 4: prev, 5: status, 6: time_source, 7: pack}.

    status is (battery_mv, rssi_dbm, uptime_s, dropped, reset_cause); readings as in pinseal.wire.senml.
    """
    return _payload(boot, seq, prev, status, time_source, readings).value()


def _payload(boot, seq, prev, status, time_source, readings):
    # the encoder itself, so seal() can use its bytes without copying them
    if not readings:
        raise ValueError("bundle: no readings")
    enc = begin(boot, seq, prev, status, time_source, senml.record_count(readings))
    for time_s, records in readings:
        senml.write_reading(enc, time_s, records)
    return enc


def begin(boot, seq, prev, status, time_source, n_records):
    """An encoder holding the payload up to its pack's array head (n_records records to come): the
    caller writes the readings with senml.write_reading, as many per task step as it likes, then
    finish()es. The app writes one reading a step, decoding each from flash just before."""
    _check_uint(boot, "boot")
    _check_uint(seq, "seq")
    if len(prev) != _PREV_SIZE:
        raise ValueError("bundle: prev must have 16 bytes")
    if len(status) != _STATUS_LEN:
        raise ValueError("bundle: status has 5 entries")
    for i in range(_STATUS_LEN):
        if type(status[i]) is not int or (i != 1 and status[i] < 0):  # only rssi_dbm may be negative
            raise ValueError("bundle: bad status entry %d" % i)
    if type(time_source) is not int or not 0 <= time_source < _TIME_SOURCES:
        raise ValueError("bundle: time_source is 0, 1 or 2")
    if type(n_records) is not int or n_records < 1:
        raise ValueError("bundle: no readings")

    # ~30 bytes of header, ~24 per record: sized so a typical bundle needs no regrowth (a regrowth doubles
    # the buffer, held for the whole signature), never above the largest bundle there may be
    enc = Encoder(min(MAX_BUNDLE_SIZE, 48 + 24 * n_records))
    # keys 1..7 are written in order, which is their deterministic order (one-byte encodings 0x01..0x07)
    enc.map(7)
    enc.byte(1)
    enc.integer(VERSION)
    enc.byte(2)
    enc.integer(boot)
    enc.byte(3)
    enc.integer(seq)
    enc.byte(4)
    enc.bstr(prev)
    enc.byte(5)
    enc.array(_STATUS_LEN)
    for value in status:
        enc.integer(value)
    enc.byte(6)
    enc.integer(time_source)
    enc.byte(7)
    enc.array(n_records)
    return enc


def finish(key_id, enc):
    """(protected header, payload) of a bundle whose payload begin() and write_reading() wrote, ready for
    sign(). Raises WireError("too_large") when the bundle would exceed 2,048 bytes: the caller seals
    fewer readings instead of spending a second of CPU on a bundle nobody would accept."""
    body = enc.view()
    protected = cose.protected_kid(key_id)
    size = cose.sign1_size(len(protected), len(body))
    if size > MAX_BUNDLE_SIZE:
        raise WireError("too_large", "bundle would be %d bytes" % size)
    return protected, body


def prepare(key_id, boot, seq, prev, status, time_source, readings):
    """(protected header, payload) of a bundle, ready for sign(); the readings are not needed after this.
    WireError("too_large") as finish()."""
    return finish(key_id, _payload(boot, seq, prev, status, time_source, readings))


async def sign(signing_key, prepared):
    """The bundle's bytes (the tagged COSE_Sign1 as sent) from prepare()'s result."""
    return await cose.sign(signing_key, prepared[0], prepared[1])


async def seal(signing_key, key_id, boot, seq, prev, status, time_source, readings):
    """Builds and signs a bundle; returns its bytes. prepare() then sign(), for callers that can hold the
    readings while the bundle is signed (the app drops them in between)."""
    return await sign(signing_key, prepare(key_id, boot, seq, prev, status, time_source, readings))


def bundle_hash(bundle_bytes):
    """SHA-256 over the bundle's complete bytes: its name in acks, logs and the gateway's store."""
    return hashlib.sha256(bundle_bytes).digest()


def chain_link(bundle_bytes):
    """The next bundle's prev: the first 16 bytes of this bundle's hash."""
    return hashlib.sha256(bundle_bytes).digest()[:_PREV_SIZE]
