"""pinseal.outbox and pinseal.outbox_recovery define the record format each for itself (a `const()` is
private to its module and inlined at compile time): the two definitions must stay one format."""

from __future__ import annotations

import ast
import re

from pinseal_vboard.vm import FIRMWARE_DIR

DEFINITION = re.compile(r"^(_[A-Z][A-Z_]*) = (.+?)(?:\s+#.*)?$", re.MULTILINE)


def _definitions(module: str) -> dict[str, str]:
    return dict(DEFINITION.findall((FIRMWARE_DIR / "pinseal" / module).read_text()))


def test_recovery_reads_the_format_the_outbox_writes() -> None:
    outbox, recovery = _definitions("outbox.py"), _definitions("outbox_recovery.py")
    shared = outbox.keys() & recovery.keys()
    assert {"_HEAD", "_READING", "_BUNDLE", "_ACK", "_EVICT", "_FRAME", "_HDR", "_MAX_BODY"} <= shared
    assert {name: outbox[name] for name in shared} == {name: recovery[name] for name in shared}
    # the record kinds recovery accepts are exactly the ones there are
    kinds = {
        int(recovery[k].removeprefix("const(").removesuffix(")"), 16)
        for k in recovery
        if k in ("_HEAD", "_READING", "_BUNDLE", "_ACK", "_EVICT", "_LOST")
    }
    assert kinds == set(ast.literal_eval(recovery["_KINDS"]))
