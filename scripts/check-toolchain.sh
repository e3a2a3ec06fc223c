#!/usr/bin/env bash
# The two toolchains make setup cannot install for you: Python 3.11+ and Node 18+.
# Fails with the exact command to run when one is missing or too old.
set -u
ok=1
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "pinseal needs Python 3.11 or newer as python3 (found: $(python3 --version 2>&1 || echo none))." >&2
  echo "  Debian/Ubuntu: sudo apt-get install -y python3 python3-venv" >&2
  ok=0
fi
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "${node_major:-0}" -lt 18 ]; then
  echo "pinseal needs Node 18 or newer as node (found: $(node --version 2>&1 || echo none))." >&2
  echo "  Debian 12 / Ubuntu 24.04: sudo apt-get install -y nodejs npm" >&2
  ok=0
fi
[ "$ok" = 1 ]
