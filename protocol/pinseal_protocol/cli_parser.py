"""The argument parser every pinseal console script uses: `--version` listed in `--help`, and a typo answered
with the nearest command or option ("did you mean 'status'?") instead of only the list of choices.

argparse in Python 3.11 names a wrong choice and stops; people typing `pinseal-gateway stauts` or
`--confg` then read a list of twelve choices to find their mistake. Subcommand parsers inherit the class
(argparse makes them with the parent's), so nested commands suggest too.
"""

from __future__ import annotations

import argparse
import difflib
import re
from typing import NoReturn

from pinseal_protocol.extras import installed_version

_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)")


def nearest(word: str, candidates: list[str]) -> str | None:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def long_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every --option of the parser and its subcommands' parsers: an unrecognized option is reported by
    the top parser even when it was meant for a subcommand."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= long_options(sub)
    return found


class SuggestingParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        hint = None
        choice = _CHOICE.search(message)
        if choice:
            options = [c.strip().strip("'") for c in choice.group(2).split(",")]
            guess = nearest(choice.group(1), options)
            hint = f"did you mean '{guess}'?" if guess else None
        unknown = _UNRECOGNIZED.search(message)
        if unknown and hint is None:
            flags = sorted(long_options(self))
            for word in unknown.group(1).split():
                guess = nearest(word.split("=")[0], flags) if word.startswith("-") else None
                if guess:
                    hint = f"did you mean '{guess}'?"
                    break
        super().error(f"{message}; {hint}" if hint else message)


def add_version(parser: argparse.ArgumentParser, program: str, details: str = "") -> None:
    """`--version`, listed in --help: the program and pinseal's installed version, as the console script's
    early check (pinseal_protocol.extras.print_version_if_asked) prints it."""
    text = f"{program} {installed_version()}" + (f" ({details})" if details else "")
    parser.add_argument("--version", action="version", version=text, help="print the version and exit")
