"""Labels: printable text in, escaped text out (issue 11 #8c)."""

from __future__ import annotations

import pytest

from pinseal_protocol import labels


@pytest.mark.parametrize("label", ["balcony", "Küche 2", "étage - nord", "🌡 greenhouse", "a\\nb"])
def test_printable_labels_pass(label):
    assert labels.check_label(label) == label
    assert labels.escape_label(label) == label


@pytest.mark.parametrize(
    ("label", "shown"),
    [
        ("shed\nforged", "shed\\nforged"),
        ("a\rb", "a\\rb"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("x\u202ey", "x\\u202ey"),  # right-to-left override
        ("x\u2028y", "x\\u2028y"),  # line separator
        ("x\x85y", "x\\x85y"),  # next line (C1)
    ],
)
def test_control_characters_are_refused_and_escaped(label, shown):
    with pytest.raises(ValueError, match="control character"):
        labels.check_label(label)
    assert labels.escape_label(label) == shown


def test_a_long_label_is_refused():
    labels.check_label("x" * labels.MAX_LENGTH)
    with pytest.raises(ValueError, match="at most"):
        labels.check_label("x" * (labels.MAX_LENGTH + 1))
