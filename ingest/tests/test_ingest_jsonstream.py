"""The streaming registry reader equals json.loads on every array, at every chunk size, and refuses bad
input with a ValueError (never another exception, never a hang)."""

import io
import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinseal_ingest.jsonstream import MAX_ENTRY_CHARS, iter_entries

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def entries(text: str, chunk: int = 7, wrapper: str = "devices") -> list[Any]:
    return list(iter_entries(io.StringIO(text).read, wrapper=wrapper, chunk_chars=chunk))


def dumps(value: Any, style: int) -> str:
    if style == 0:
        return json.dumps(value)
    if style == 1:
        return json.dumps(value, indent=2)
    return json.dumps(value, separators=(",", ":"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(JSON, max_size=8), st.integers(1, 64), st.integers(0, 2), st.sampled_from(["", " ", "\n\t"]))
def test_an_array_streams_as_json_loads_reads_it(value: list[Any], chunk: int, style: int, pad: str) -> None:
    text = pad + dumps(value, style) + pad
    assert entries(text, chunk) == json.loads(text)


@settings(max_examples=80, deadline=None)
@given(st.lists(JSON, max_size=6), st.integers(1, 32), st.dictionaries(st.text(max_size=5), JSON, max_size=3))
def test_the_wrapper_object_streams_its_array(value: list[Any], chunk: int, extra: dict[str, Any]) -> None:
    extra.pop("devices", None)
    text = json.dumps({**extra, "devices": value, "after": 1})
    assert entries(text, chunk) == value


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.dictionaries(st.text(max_size=5), JSON, max_size=3), min_size=1, max_size=6),
    st.integers(1, 32),
)
def test_json_lines(objects: list[dict[str, Any]], chunk: int) -> None:
    objects = [o for o in objects if "devices" not in o] or [{}]
    text = "\n".join(json.dumps(o) for o in objects) + "\n\n"
    assert entries(text, chunk) == objects


def judged(text: str, chunk: int) -> list[Any] | None:
    """The streamed entries, or None for a ValueError (any other exception fails the test)."""
    try:
        return entries(text, chunk)
    except ValueError as exc:
        assert str(exc)
        return None


def loaded(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='[]{},:"0123456789.eE+-tfnrul \n\\ax', max_size=40), st.integers(1, 16))
def test_arbitrary_text_is_read_or_refused(text: str, chunk: int) -> None:
    result = judged(text, chunk)
    if text.lstrip(" \t\n\r").startswith("["):
        assert result == loaded(text)


@settings(max_examples=150, deadline=None)
@given(st.lists(JSON, min_size=1, max_size=6), st.data())
def test_truncated_or_damaged_arrays_are_refused(value: list[Any], data: st.DataObject) -> None:
    text = json.dumps(value)
    cut = data.draw(st.integers(0, len(text) - 1))
    damaged = text[:cut] + data.draw(st.sampled_from(["", "}", ",", "x", "]]", '"'])) + text[cut + 1 :]
    result = judged(damaged, data.draw(st.integers(1, 16)))
    assert result == loaded(damaged)


def test_messages_say_where() -> None:
    broken = '[\n {"a": 1},\n {"b": 2},\n {"c": 3 "d": 4}\n]'
    with pytest.raises(json.JSONDecodeError) as reference:
        json.loads(broken)
    where = f"line {reference.value.lineno}, column {reference.value.colno}"
    for chunk in range(1, len(broken) + 2):  # the same place however the text was cut into chunks
        with pytest.raises(ValueError, match=rf"entry 2: not JSON: Expecting ',' delimiter \({where}\)"):
            entries(broken, chunk)
    with pytest.raises(ValueError, match="the registry file is empty"):
        entries(" \n")
    with pytest.raises(ValueError, match="not text starting with '\"'"):
        entries('"devices"')
    with pytest.raises(ValueError, match="extra data"):
        entries("[1] 2")
    with pytest.raises(ValueError, match='"devices" must be a JSON array'):
        entries('{"devices": 3}')
    with pytest.raises(ValueError, match="entry 1: not JSON"):
        entries('{"public_key": "aa"}\n{"public_key": \n')


def test_deep_nesting_and_huge_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        entries("[" * 200_000, chunk=1 << 16)
    endless = io.StringIO('[{"label": "' + "x" * (3 * MAX_ENTRY_CHARS))
    with pytest.raises(ValueError, match=f"not JSON within {MAX_ENTRY_CHARS} characters"):
        list(iter_entries(endless.read, wrapper="devices"))
    assert endless.tell() < 2 * MAX_ENTRY_CHARS  # stopped reading: the rest of the file was never held


def test_invalid_utf8_is_a_value_error() -> None:
    stream = io.TextIOWrapper(io.BytesIO(b'[{"label": "\xff\xfe"}]'), encoding="utf-8")
    with pytest.raises(ValueError, match="not UTF-8"):
        list(iter_entries(stream.read, wrapper="devices"))


def test_unicode_is_kept_across_chunks() -> None:
    value = [{"label": "Küche ☃ " + string.ascii_letters}]
    assert entries(json.dumps(value, ensure_ascii=False), chunk=1) == value
