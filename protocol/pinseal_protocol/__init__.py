"""Host side of the pinseal wire protocol v1 (docs/protocol.md).

One module per concept: deterministic CBOR (`dcbor`), key ids (`keys`), COSE_Sign1 (`cose`),
SenML readings (`senml`), bundles (`bundle`), acks (`ack`), replay/conflict logic (`history`),
RFC 9162 Merkle trees (`merkle`), gateway batch headers and the uplink message (`batch`), the
rejection reasons (`errors`). Codecs only: the vector generator and the test keys live in
`pinseal_devkit` (tools/), so nothing here can sign with a published test key.
"""
