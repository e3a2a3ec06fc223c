"""make hil-arm64: the gateway on arm64 (Debian tree, qemu-user in a private namespace): docs/testing.md"""
