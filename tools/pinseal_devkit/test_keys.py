"""The fixed keys every test, vector and demo shares, so that no test key lives in a runtime package.

The device, gateway and "another device / an impostor" are RFC 8032 §7.1 TEST 1, 2 and 3: public test
keys whose outputs anyone can check against the RFC, and whose key ids protocol/vectors/README.md
names. The Ed448 key (RFC 8032 §7.4 "blank", also the COSE WG eddsa-sig-02 key) only signs the vector
that shows v1's EdDSA means Ed25519. Never provision a real device with any of them.
"""

from pinseal_protocol import keys

DEVICE_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
GATEWAY_SEED = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
OTHER_SEED = bytes.fromhex("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7")
ED448_SEED = bytes.fromhex(
    "6c82a562cb808d10d632be89c8513ebf6c929f34ddfa8c9f63c9960ef6e348a3"
    "528c8a3fcc2f044e39a3fc5b94492f8f032e7549a20098f95b"
)

DEVICE_KEY = keys.load_private_key(DEVICE_SEED)
GATEWAY_KEY = keys.load_private_key(GATEWAY_SEED)
OTHER_KEY = keys.load_private_key(OTHER_SEED)
DEVICE_PUB = keys.public_key_bytes(DEVICE_KEY)
GATEWAY_PUB = keys.public_key_bytes(GATEWAY_KEY)
OTHER_PUB = keys.public_key_bytes(OTHER_KEY)
DEVICE_KID = keys.key_id(DEVICE_PUB)
GATEWAY_KID = keys.key_id(GATEWAY_PUB)
OTHER_KID = keys.key_id(OTHER_PUB)
