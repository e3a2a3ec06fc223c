"""pinseal home gateway: ingest, verify, store, prove and forward device bundles (docs/gateway.md)."""
