# pinseal.crypto.ed25519 inside the MicroPython VM: RFC 8032 section 7.1 test vectors (exact public keys
# and signatures), every Wycheproof Ed25519 verification test, the async forms, and the limits the
# firmware relies on (bad input gives False, the signer yields, the comb table stays small).
import json

from pinseal.crypto import ed25519
from pinseal.crypto.steps import run

# RFC 8032 section 7.1, TEST 1024: the 1023-byte message.
MSG_1024 = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1"
    "e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a"
    "7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc10"
    "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d"
    "502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089b"
    "eccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af8969b"
    "e3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988d"
    "cda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7"
    "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac09"
    "43bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f161"
    "0e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8ca"
    "c60c905c15fc910840b94c00a0b9d0"
)
# RFC 8032 section 7.1, TEST SHA(abc): the message is SHA-512("abc").
SHA512_ABC = (
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
)

# (name, secret key, public key, message, signature), all hex, from RFC 8032 section 7.1.
RFC8032 = [
    (
        "TEST 1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        (
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
            "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        ),
    ),
    (
        "TEST 2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        (
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
            "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        ),
    ),
    (
        "TEST 3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        (
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
            "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"
        ),
    ),
    (
        "TEST 1024",
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        MSG_1024,
        (
            "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
            "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03"
        ),
    ),
    (
        "TEST SHA(abc)",
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        SHA512_ABC,
        (
            "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
            "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"
        ),
    ),
]

L = 2**252 + 27742317777372353535851937790883648493  # the group order
WYCHEPROOF = "/vectors/third_party/wycheproof/ed25519_test.json"


def h(s):
    return bytes.fromhex(s)


def test_rfc8032_vectors_sign_exactly_and_verify():
    for name, sk, pk, msg, sig in RFC8032:
        key = ed25519.SigningKey(h(sk))
        assert key.public_key == h(pk), name
        assert key.sign(h(msg)) == h(sig), name
        assert ed25519.verify(h(pk), h(msg), h(sig)), name
        assert not ed25519.verify(h(pk), h(msg) + b"\x00", h(sig)), name


def test_wycheproof_all_151():
    with open(WYCHEPROOF) as f:
        doc = json.load(f)
    n = 0
    wrong = []
    for group in doc["testGroups"]:
        pk = h(group["publicKey"]["pk"])
        for t in group["tests"]:
            n += 1
            expected = t["result"] == "valid"
            if ed25519.verify(pk, h(t["msg"]), h(t["sig"])) != expected:
                wrong.append(t["tcId"])
    assert n == doc["numberOfTests"] == 151, n
    assert not wrong, wrong


async def test_async_signer_gives_the_same_bytes():
    key = ed25519.SigningKey(h(RFC8032[1][1]))
    for n in (0, 1, 111, 180, 300):
        msg = bytes((i * 13 + n) & 255 for i in range(n))
        sig = await key.sign_async(msg)
        assert sig == key.sign(msg), n
        assert await ed25519.verify_async(key.public_key, msg, sig), n
        assert not await ed25519.verify_async(key.public_key, msg + b"!", sig), n


def test_sign_steps_yields_many_times_and_returns_the_signature():
    name, sk, pk, msg, sig = RFC8032[3]
    gen = ed25519.SigningKey(h(sk)).sign_steps(h(msg))
    steps = 0
    try:
        while True:
            next(gen)
            steps += 1
    except StopIteration as e:
        assert e.value == h(sig)
    assert steps >= 20, steps  # 1023 + 64 bytes hashed twice: many blocks, each split


def test_bad_input_gives_false_never_raises():
    name, sk, pk, msg, sig = RFC8032[2]
    pk, msg, sig = h(pk), h(msg), h(sig)
    assert ed25519.verify(pk, msg, sig)
    assert not ed25519.verify(pk, msg, sig[:63])
    assert not ed25519.verify(pk, msg, sig + b"\x00")
    assert not ed25519.verify(pk[:31], msg, sig)
    assert not ed25519.verify(b"", msg, sig)
    assert not ed25519.verify(None, msg, sig)
    assert not ed25519.verify(pk, msg, None)
    assert not ed25519.verify(pk, None, sig)
    assert not ed25519.verify(12345, msg, sig)
    # S + L: the same scalar mod L, rejected because S must be below L.
    s = int.from_bytes(sig[32:], "little") + L
    assert not ed25519.verify(pk, msg, sig[:32] + s.to_bytes(32, "little"))
    # A public key with y >= p (non-canonical) and one that is not on the curve.
    assert not ed25519.verify(b"\xff" * 31 + b"\x7f", msg, sig)
    assert not ed25519.verify(b"\xee" + b"\xff" * 30 + b"\x7f", msg, sig)
    not_on_curve = (2).to_bytes(32, "little")  # y = 2: (y^2 - 1) / (d y^2 + 1) is not a square
    assert run(ed25519._decode(not_on_curve)) is None
    assert not ed25519.verify(not_on_curve, msg, sig)
    # x = 0 with the sign bit set (y = 1) does not decode.
    assert run(ed25519._decode((1 | 1 << 255).to_bytes(32, "little"))) is None
    assert not ed25519.verify(pk, msg, bytes(64))


def test_seed_must_be_32_bytes():
    try:
        ed25519.SigningKey(bytes(31))
    except ValueError:
        return
    raise AssertionError("a 31-byte seed was accepted")


async def test_signing_leaves_nothing_resident():
    # The comb table is a constant (pinseal.crypto.comb_table): the first signature of a boot no longer
    # builds 11.9 KB of big integers that then stay live for good (the firmware's former high-water mark).
    import asyncio
    import gc

    async def live():
        # The VM collects only when control returns to JS; a stale root can keep garbage for one round.
        least = None
        for _ in range(3):
            gc.collect()
            await asyncio.sleep_ms(1)
            n = gc.mem_alloc()
            least = n if least is None or n < least else least
        return least

    key = ed25519.SigningKey(h(RFC8032[2][1]))
    before = await live()
    for _ in range(2):
        assert key.sign(h(RFC8032[2][3])) == h(RFC8032[2][4])
    assert ed25519.verify(key.public_key, h(RFC8032[2][3]), h(RFC8032[2][4]))
    grown = await live() - before
    assert grown <= 256, grown


async def test_key_from_seed_async_matches_sync():
    seed = bytes(range(32))
    key = await ed25519.SigningKey.from_seed_async(seed)
    assert key.public_key == ed25519.SigningKey(seed).public_key
    assert key.sign(b"abc") == ed25519.SigningKey(seed).sign(b"abc")


def test_message_in_parts_signs_as_its_concatenation():
    # COSE hands the Sig_structure over as (head, payload) so that the payload is never copied while signed
    key = ed25519.SigningKey(bytes(range(32)))
    msg = bytes((i * 31 + 7) & 255 for i in range(1100))
    whole = key.sign(msg)
    for cut in (0, 1, 45, 127, 128, 129, 1099, 1100):
        assert key.sign(msg[:cut], memoryview(msg)[cut:]) == whole
    assert key.sign(msg[:10], msg[10:700], bytearray(msg[700:])) == whole
    assert ed25519.verify(key.public_key, msg, whole)


def test_every_comb_size_gives_rfc8032_keys_and_signatures():
    # use_comb(1|2|4): the smaller tables reach the same multiples of B with more doublings; each size
    # must sign byte for byte as RFC 8032 says and verify (sB through the comb), and bad sizes are refused.
    try:
        for subs in (1, 2, 4):
            ed25519.use_comb(subs)
            assert len(ed25519._load_tables()) == subs
            for name, sk, pk, msg, sig in RFC8032:
                key = ed25519.SigningKey(h(sk))
                assert key.public_key == h(pk), (subs, name)
                assert key.sign(h(msg)) == h(sig), (subs, name)
                assert ed25519.verify(h(pk), h(msg), h(sig)), (subs, name)
                assert not ed25519.verify(h(pk), h(msg), h(sig)[:63] + b"\x01"), (subs, name)
        for bad in (0, 3, 8, None):
            try:
                ed25519.use_comb(bad)
            except ValueError:
                continue
            raise AssertionError("use_comb(%r) was accepted" % (bad,))
    finally:
        ed25519.use_comb(4)


def test_fewer_sub_combs_import_fewer_tables():
    import sys

    for name in ("pinseal.crypto.comb_table_2", "pinseal.crypto.comb_table_4"):
        sys.modules.pop(name, None)
    try:
        ed25519.use_comb(1)
        ed25519.SigningKey(h(RFC8032[0][1]))
        assert "pinseal.crypto.comb_table_2" not in sys.modules
        assert "pinseal.crypto.comb_table_4" not in sys.modules
        ed25519.use_comb(2)
        ed25519.SigningKey(h(RFC8032[0][1]))
        assert "pinseal.crypto.comb_table_4" not in sys.modules
    finally:
        ed25519.use_comb(4)
