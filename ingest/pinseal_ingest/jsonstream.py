"""The entries of a registry file, read as a stream: a million devices never sit in memory at once.

Three layouts, told apart by the first character that is not JSON whitespace:

- `[`: a JSON array of entries (what `pinseal-provision --export` and `pinseal-gateway devices export`
  write);
- `{` whose object has the key `wrapper` (the table's name, "devices" or "gateways") holding an array:
  that array's elements are the entries (the object's other keys are ignored);
- any other `{`: JSON Lines, one entry per line (values separated by JSON whitespace; a blank line is
  fine). Its first object is therefore an entry, unless it holds the wrapper array.

Anything else (an empty file, a bare string or number) is refused. The text is read in chunks of
`chunk_chars` and each entry decoded with `json.JSONDecoder.raw_decode` over a sliding buffer that keeps
only the entry being read: memory is one chunk plus one entry, whatever the file's size. An entry that is
not complete after `MAX_ENTRY_CHARS` characters is refused (malformed input then costs a bounded read, never
the whole file in memory), and every step either consumes input, reads more, or raises `ValueError`
saying where (entry index, line and column), so bad input never hangs the parser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

CHUNK_CHARS = 1 << 16
MAX_ENTRY_CHARS = 1 << 20
"""Provisioning records are under 1 KiB; a megabyte is far beyond any honest entry."""

_WHITESPACE = re.compile(r"[ \t\n\r]*")  # exactly json's whitespace, so the verdicts equal json.loads'
_DECODER = json.JSONDecoder()
_NUMBER_GOES_ON = frozenset("0123456789.eE+-")


class _Window:
    """A sliding window over a text stream: `buf[pos:]` is what is not consumed yet."""

    def __init__(self, read: Callable[[int], str], chunk_chars: int) -> None:
        if chunk_chars < 1:
            raise ValueError("chunk_chars must be positive")
        self._read = read
        self._chunk = chunk_chars
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.index = 0  # the entry being read, for messages
        self._line = 1  # line and column of buf[0]
        self._column = 1

    def fill(self) -> bool:
        """Append one chunk, dropping what was consumed; False at the end of the input."""
        if self.eof:
            return False
        try:
            data = self._read(self._chunk)
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text near line {self._line} ({exc.reason})") from None
        if not data:
            self.eof = True
            return False
        if self.pos:
            dropped = self.buf[: self.pos]
            newlines = dropped.count("\n")
            if newlines:
                self._line += newlines
                self._column = len(dropped) - dropped.rfind("\n")
            else:
                self._column += len(dropped)
            self.buf, self.pos = self.buf[self.pos :], 0
        self.buf += data
        return True

    def where(self, pos: int) -> str:
        before = self.buf[:pos]
        newlines = before.count("\n")
        column = pos - before.rfind("\n") if newlines else self._column + pos
        return f"line {self._line + newlines}, column {column}"

    def error(self, what: str, pos: int | None = None) -> ValueError:
        return ValueError(f"entry {self.index}: {what} ({self.where(self.pos if pos is None else pos)})")

    def peek(self) -> str:
        """The next character that is not whitespace ('' at the end of the input); `pos` is left on it."""
        while True:
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def expect(self, char: str, what: str) -> None:
        if self.peek() != char:
            found = self.peek()
            raise self.error(
                f"expected {what}, found {found!r}" if found else f"expected {what}, not the end"
            )
        self.pos += 1

    def value(self) -> Any:
        """Decode the JSON value at `pos`, reading on while it may be incomplete."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self.eof:
                    raise self.error(f"not JSON: {exc.msg}", exc.pos) from None
                if len(self.buf) - self.pos > MAX_ENTRY_CHARS:
                    raise self.error(
                        f"not JSON within {MAX_ENTRY_CHARS} characters: {exc.msg}", exc.pos
                    ) from None
                self.fill()
                continue
            except RecursionError:
                raise self.error("nested too deeply") from None
            except ValueError as exc:  # an integer beyond Python's digit limit
                raise self.error(str(exc)) from None
            if self._may_go_on(end) and len(self.buf) - self.pos <= MAX_ENTRY_CHARS and self.fill():
                continue  # a number whose next characters are in the next chunk: decode it again
            self.pos = end
            return value

    def _may_go_on(self, end: int) -> bool:
        """Whether the value just decoded may be the prefix of a longer one: only a bare number (or
        literal) can be, when the buffer ends with it or it is followed by what a number continues with."""
        if self.eof or self.buf[self.pos] in '{["':
            return False
        return end == len(self.buf) or self.buf[end] in _NUMBER_GOES_ON


def iter_entries(
    read: Callable[[int], str], *, wrapper: str, chunk_chars: int = CHUNK_CHARS
) -> Iterator[Any]:
    """The entries of a registry file, decoded one at a time (`read` is a text stream's `read`)."""
    window = _Window(read, chunk_chars)
    first = window.peek()
    if first == "[":
        window.pos += 1
        yield from _array(window)
        _end(window)
    elif first == "{":
        yield from _object_or_lines(window, wrapper)
    elif first == "":
        raise ValueError("the registry file is empty")
    else:
        raise window.error(
            f'a registry file is a JSON array of entries, an object with a "{wrapper}" array, or JSON Lines'
            f" (one object per line), not text starting with {first!r}"
        )


def _array(window: _Window) -> Iterator[Any]:
    """The elements of the array whose `[` was just consumed, up to and including its `]`."""
    if window.peek() == "]":
        window.pos += 1
        return
    while True:
        yield window.value()
        window.index += 1
        char = window.peek()
        window.pos += 1
        if char == "]":
            return
        if char != ",":
            window.pos -= 1
            raise window.error(
                f"expected ',' or ']' after an entry, found {char!r}" if char else "unclosed ["
            )
        window.peek()


def _end(window: _Window) -> None:
    if window.peek():
        raise window.error("extra data after the end of the registry")


def _object_or_lines(window: _Window, wrapper: str) -> Iterator[Any]:
    """`{"<wrapper>": [...], ...}` streamed, or JSON Lines whose first object is this one."""
    window.pos += 1
    fields: dict[str, Any] = {}
    wrapped = False
    if window.peek() == "}":
        window.pos += 1
    else:
        while True:
            if window.peek() != '"':
                raise window.error("expected a key in double quotes")
            key = window.value()
            window.expect(":", "':' after a key")
            if window.peek() == "[" and key == wrapper:
                if wrapped:
                    raise window.error(f'a second "{wrapper}" array')
                window.pos += 1
                yield from _array(window)
                wrapped = True
            else:
                fields[key] = window.value()
            char = window.peek()
            window.pos += 1
            if char == "}":
                break
            if char != ",":
                window.pos -= 1
                raise window.error(
                    f"expected ',' or '}}' in an object, found {char!r}" if char else "unclosed {"
                )
    if wrapped:
        _end(window)
        return
    if wrapper in fields:
        raise window.error(f'"{wrapper}" must be a JSON array of entries')
    yield fields  # JSON Lines: the first line was an entry
    window.index += 1
    while window.peek():
        yield window.value()
        window.index += 1
