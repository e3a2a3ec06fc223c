# pinseal.crypto.sha512 inside the MicroPython VM against digests computed on the host with CPython's
# hashlib: the FIPS 180-4 examples and lengths on both sides of every padding boundary (111/112 bytes:
# the length still fits in the last block or not; 128, 239/240, 256: one block more).
from pinseal.crypto.sha512 import sha512
from pinseal.crypto.steps import run

EMPTY = (
    "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
)
ABC = (
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
)
# FIPS 180-4 / NIST example: the 896-bit message, two blocks once padded.
TWO_BLOCK_MSG = (
    b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
    b"hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
)
TWO_BLOCK = (
    "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
    "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"
)
A_1000 = (
    "67ba5535a46e3f86dbfbed8cbbaf0125c76ed549ff8b0b9e03e0c88cf90fa634"
    "fa7b12b47d77b694de488ace8d9a65967dc96df599727d3292a8d9d447709c97"
)

# hashlib.sha512(pattern(n)) for pattern(n) = bytes((i * 31 + 7) & 255 for i in range(n)).
BY_LENGTH = {
    1: (
        "365d11a1dfe610b60efa996136d37ab8afd2715b8c6bc2850dc5e6005b702bb9"
        "f59b0f306ecb2c43ee44c429967d45843524eb2f7c16aab9bde142ee268b51c6"
    ),
    55: (
        "330eb5e81b4d722cae1e0efbf883efb180c3e346d2b3b797dafc90409583ed35"
        "af65dc2d7974a353f0c21663e196b60d3ee5a2c70c50b7b3bccdb93a5dbce6bf"
    ),
    111: (
        "da780d8338a8a920ceb6892cb4ecbb0cc0c66956269aadd5dd0f48790a00857b"
        "d975890f3b2955a317738cc7a770820c29f922ffbc22020f1909d594cc987d1b"
    ),
    112: (
        "053182f7fa4e59f8636e415a77ed4fdc650f0a43834c9d35adf899599c3ab9c4"
        "153f02ff50bd01888060cd36a6fa12d9db242fc35164c80135613514186d5843"
    ),
    113: (
        "766fea2f90094ecec1166ea4d6e9ddc6ae6fbe4a060e049300ecbe631a7d6547"
        "409b6ac39865409e6dd5dada112955fddf32698feb98806c1910f446ac5af7e3"
    ),
    127: (
        "a7a75593826fd37d4e60f6101eabb9f8ab1cf4d5319ebc805266d5da8deb5097"
        "de1a235fc5d9d3d73c50ac100ffc75089fb454674ab61232091bd19cbdc67396"
    ),
    128: (
        "df007a08f3aaae47e0c92ef840ecd43645ae6098c819f2a4a66174ef1cd49e5c"
        "6dfccf0616895e570b7564af641de5863dff9f89c752913d30cf0ecf678e1635"
    ),
    129: (
        "a10ea769b79831bca33e9efb29fc501ded6e9c88885d079acb76eecaa8ac58d6"
        "8bdc7e00103053e1519352c0d064c87accc3d553a6039decc2c4f1e7667eef79"
    ),
    239: (
        "38980139aa28f1ccec548e21fd73d927488c4aa749a4b304fe0c5f7797fb80a0"
        "3bc0557584ef42f47e0d3ff4eee0011084ac8421cf08dd2cea6a132bcd075c90"
    ),
    240: (
        "eb5690f4b1753298de6626f031576ca2b93cec042d597a7a1f9e47534af610f4"
        "09acb608d88fdaeade8b36fd09a6cd81f2ff8ec10962e79cd791eebc26d569f5"
    ),
    241: (
        "251de04cf5e385bd219874e1d5b9bd8922411704029606ac7b99915032fa4bc7"
        "fb8435b84995f14a8707ff154c9c3d13332a1e4c2233ccbfa3494b91558bfd5f"
    ),
    255: (
        "ac1ecd53106f3dfba66b7b3fcac37652aad2aad2a291c354eaca03928e74853d"
        "53c0e8c7f2fa05025efdb262fd4b51103747d3dafd53e1feefc590bf2617b30a"
    ),
    256: (
        "7629794792236644c8c5792257d9a64320b887aae34806f9bc3713c494ea7f17"
        "602e0a9a9009b1e69b31d189d89a4f599dd30891fa04a1668ff31e30d0719df4"
    ),
    1000: (
        "b41d42e106eca6bf57123566b7ed1550c37d33af23afbfa8e302dfd44c988b30"
        "03a26b4140ef42f535e66ea424e7c4a31616307269e6d520a6508f726da23d0a"
    ),
}


def pattern(n):
    return bytes((i * 31 + 7) & 255 for i in range(n))


def test_fips_examples():
    assert sha512(b"").digest().hex() == EMPTY
    assert sha512(b"abc").digest().hex() == ABC
    assert len(TWO_BLOCK_MSG) == 112
    assert sha512(TWO_BLOCK_MSG).digest().hex() == TWO_BLOCK


def test_lengths_around_padding_boundaries():
    for n, expected in BY_LENGTH.items():
        assert sha512(pattern(n)).digest().hex() == expected, n


def test_1000_bytes():
    assert sha512(b"a" * 1000).digest().hex() == A_1000


def test_incremental_updates_in_any_split():
    msg = pattern(1000)
    for step in (1, 7, 64, 127, 128, 129, 300):
        h = sha512()
        for i in range(0, len(msg), step):
            h.update(msg[i : i + step])
        assert h.digest().hex() == BY_LENGTH[1000], step
    # digest() leaves the object usable, as hashlib's does
    h = sha512(b"ab")
    assert h.digest().hex() == h.digest().hex()
    h.update(b"c")
    assert h.digest().hex() == ABC


def test_accepts_bytearray_and_memoryview():
    msg = pattern(240)
    assert sha512(bytearray(msg)).digest().hex() == BY_LENGTH[240]
    assert sha512(memoryview(msg)).digest().hex() == BY_LENGTH[240]


def test_step_generators_yield_per_block_and_match():
    msg = pattern(1000)
    h = sha512()
    steps = 0
    for _ in h.update_steps(msg):
        steps += 1
    assert steps == 10 * (len(msg) // 128)  # every 8 rounds of each block
    gen = h.digest_steps()
    assert run(gen).hex() == BY_LENGTH[1000]


async def test_async_driving_gives_same_digest():
    import asyncio

    h = sha512()
    for _ in h.update_steps(pattern(239)):
        await asyncio.sleep_ms(0)
    gen = h.digest_steps()
    try:
        while True:
            next(gen)
            await asyncio.sleep_ms(0)
    except StopIteration as e:
        assert e.value.hex() == BY_LENGTH[239]


async def test_block_holds_little_across_its_yields():
    # The schedule used to be built whole (80 words and their K sums as big integers) and held across the
    # mid-block yield: ~8 KB live for every signature's hashing, most of a seal's high-water mark.
    import asyncio
    import gc

    async def live():
        least = None
        for _ in range(3):  # the VM collects only when control returns to JS
            gc.collect()
            await asyncio.sleep_ms(1)
            n = gc.mem_alloc()
            least = n if least is None or n < least else least
        return least

    # One block's ten slices: each await here leaves a little behind in this plain VM (its JS bridge's
    # proxies, ~50 B a sleep, freed only by V8's collector), so a longer message would measure those.
    msg = pattern(128)
    h = sha512()
    base = await live()
    peak = 0
    for _ in h.update_steps(msg):
        peak = max(peak, await live() - base)
    assert peak <= 4000, peak  # 3,264 measured (generator frames, rings, state, round locals)
    assert run(h.digest_steps()).hex() == BY_LENGTH[128]
