"""The reference network ingest: the receiving end of a gateway's batch uplink (docs/protocol.md §9).

It trusts nothing the gateway already checked: every batch is verified again (gateway registry, header
signature, batch chain, Merkle root, every bundle's device signature and history) and stored all or
nothing. One module per job: `db` (SQLite), `registry` (gateways and devices), `store` (batches and
bundles), `accept` (the check chain for one uplink body), `service` (the database worker thread),
`metrics`, `api` (aiohttp routes), `server` (running it until SIGTERM) and `cli`.
"""
