# pinseal.wire.senml in the MicroPython VM: readings (time_s, ((name, unit, value), ...)) to the SenML CBOR
# pack of docs/protocol.md §4, byte for byte.
from pinseal.wire import senml
from pinseal.wire.cbor import Encoder, loads

T_H_P = ("t", "Cel", (-2, 2150)), ("h", "%RH", (-2, 4512)), ("p", "Pa", 101325)

# Expected bytes computed on the host with cbor2 6.2.1 (canonical=True; all keys encode in one byte, where
# cbor2's order and RFC 8949 §4.2.1 agree):
#   cbor2.dumps([{-3: 1700000000, 0: "t", 1: "Cel", 2: CBORTag(4, [-2, 2150])},
#                {0: "h", 1: "%RH", 2: CBORTag(4, [-2, 4512])}, {0: "p", 1: "Pa", 2: 101325}], canonical=True)
ONE_READING = (
    "83a4006174016343656c02c48221190866221a6553f100a3006168"
    "016325524802c482211911a0a300617001625061021a00018bcd"
)
# ... + [{-3: 1700000060, 0: "t", 2: CBORTag(4, [-2, -510])}, {0: "h", 3: "ENODEV"},
#        {0: "p", 1: "Pa", 2: 99000}]
TWO_READINGS = (
    "86a4006174016343656c02c48221190866221a6553f100a3006168016325524802c482211911a0a300617001625061021a00018bcd"
    "a300617402c482213901fd221a6553f13ca20061680366454e4f444556a300617001625061021a000182b8"
)


def test_one_reading_of_three_values():
    assert senml.pack([(1700000000, T_H_P)]).hex() == ONE_READING


def test_first_record_carries_bt_the_others_share_it():
    pack = loads(senml.pack([(1700000000, T_H_P), (1700000060, T_H_P)]))
    assert len(pack) == 6
    with_bt = [i for i, record in enumerate(pack) if -3 in record]
    assert with_bt == [0, 3]
    assert pack[3][-3] == 1700000060
    assert all(6 not in record for record in pack)  # no per-record t


def test_failed_sensor_unitless_value_and_vs():
    readings = [
        (1700000000, T_H_P),
        (1700000060, (("t", None, (-2, -510)), ("h", None, "ENODEV"), ("p", "Pa", 99000))),
    ]
    assert senml.pack(readings).hex() == TWO_READINGS


def test_lists_work_like_tuples():
    readings = [[1700000000, [["t", "Cel", [-2, 2150]], ["h", "%RH", [-2, 4512]], ["p", "Pa", 101325]]]]
    assert senml.pack(readings).hex() == ONE_READING


def test_decimal_fraction_is_not_normalised():
    pack = senml.pack([(5, (("t", "Cel", (-2, 2100)),))])
    # [{0: "t", 1: "Cel", 2: 4([-2, 2100]), -3: 5}]
    assert pack.hex() == "81a4006174016343656c02c48221190834" + "2205"
    pack = senml.pack([(5, (("bat", "V", (-3, 3912)),))])
    assert "c48222190f48" in pack.hex()


def test_large_and_negative_values():
    value = loads(senml.pack([(2**33, (("x", None, -(2**40)), ("y", None, (-30, 2**63))))]))
    assert value[0] == {0: "x", 2: -(2**40), -3: 2**33}
    assert value[1][2].tag == 4 and value[1][2].value == [-30, 2**63]


def test_write_pack_into_an_existing_encoder():
    enc = Encoder(4)
    enc.byte(0x07)
    senml.write_pack(enc, [(1700000000, T_H_P)])
    assert enc.value().hex() == "07" + ONE_READING


def test_record_count():
    assert senml.record_count([(1, T_H_P), (2, T_H_P[:1])]) == 4


def test_rejects_bad_readings():
    bad = [
        [(1, ())],  # a reading without records has nowhere to put bt
        [(-1, T_H_P)],
        [(1.5, T_H_P)],
        [(1, (("t", "Cel", 21.5),))],  # floats never
        [(1, (("t", "Cel", (-2, 2150, 0)),))],
        [(1, (("t", "Cel", (-2, 21.5)),))],
        [(1, (("t", "Cel", True),))],
        [(1, (("t", "Cel", None),))],
    ]
    for readings in bad:
        try:
            senml.pack(readings)
        except ValueError:
            continue
        raise AssertionError("packed %r" % (readings,))


def test_decimal_fraction_parts_must_be_integers():
    # a float would encode differently on single- and double-precision boards
    for value in ((-2, 21.0), (-2.0, 2100), (-2,), (-2, 2100, 0)):
        try:
            senml.pack([(5, (("t", "Cel", value),))])
        except ValueError:
            continue
        raise AssertionError("accepted %r" % (value,))


def test_repeated_records_reuse_their_encoded_prefix_and_stay_exact():
    readings = [(60 * i, (("t", "Cel", (-2, i)), ("t", None, "EIO"))) for i in range(3)]
    first = senml.pack(readings)
    assert senml.pack(readings) == first
    decoded = loads(first)
    assert decoded[1] == {0: "t", 3: "EIO"}
    assert decoded[2][-3] == 60 and decoded[2][2].value == [-2, 1]
