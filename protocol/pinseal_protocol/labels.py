"""Device and gateway labels: free text from an owner, shown in line-oriented listings.

A label is printed inside a line of `devices list` (gateway and ingest) and in logs, so a newline, an
escape sequence or a bidirectional override in it could forge a line or hide text. Such characters are
refused when a label is entered, and escaped when one is shown (a label stored before the check, or by
another tool, still cannot break a line).
"""

from __future__ import annotations

import unicodedata

MAX_LENGTH = 200
# Control (Cc), format (Cf: bidi overrides, zero-width), line and paragraph separators, lone surrogates.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _refused(char: str) -> bool:
    return unicodedata.category(char) in _REFUSED_CATEGORIES


def check_label(label: str) -> str:
    """`label` if it is printable text of at most MAX_LENGTH characters, else ValueError naming the
    first offending character."""
    for position, char in enumerate(label):
        if _refused(char):
            raise ValueError(
                f"a label may not contain a control character: {escape_label(char)} at position {position}"
            )
    if len(label) > MAX_LENGTH:
        raise ValueError(f"a label has at most {MAX_LENGTH} characters, not {len(label)}")
    return label


def escape_label(label: str) -> str:
    """`label` with every refused character written as a Python escape (\\n, \\x1b, \\u202e)."""
    return "".join(
        char.encode("unicode_escape").decode("ascii") if _refused(char) else char for char in label
    )
