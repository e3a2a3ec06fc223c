"""Every console script's parser: --version listed in --help, typos answered with the nearest command."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinseal_gateway.cli import build_parser as gateway_parser
from pinseal_ingest.cli import _parser as ingest_parser
from pinseal_protocol.cli_parser import nearest
from pinseal_provision.cli import build_parser as provision_parser

PARSERS = {
    "pinseal-gateway": gateway_parser,
    "pinseal-ingest": ingest_parser,
    "pinseal-provision": provision_parser,
}


def error_of(parser, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("program", sorted(PARSERS))
def test_version_is_listed_in_help_and_prints(program: str, capsys) -> None:
    parser = PARSERS[program]()
    assert "--version" in parser.format_help()
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith(f"{program} ")


@pytest.mark.parametrize(
    ("program", "argv", "hint"),
    [
        ("pinseal-gateway", ["stauts"], "did you mean 'status'?"),
        ("pinseal-gateway", ["devices", "lst"], "did you mean 'list'?"),
        ("pinseal-gateway", ["status", "--confg", "x"], "did you mean '--config'?"),
        ("pinseal-ingest", ["stat"], "did you mean 'stats'?"),
        ("pinseal-provision", ["falsh"], "did you mean 'flash'?"),
    ],
)
def test_a_typo_gets_the_nearest_command(program: str, argv: list[str], hint: str, capsys) -> None:
    assert hint in error_of(PARSERS[program](), argv, capsys)


def test_no_guess_when_nothing_is_close(capsys) -> None:
    err = error_of(gateway_parser(), ["xyzzy"], capsys)
    assert "invalid choice: 'xyzzy'" in err and "did you mean" not in err


@settings(max_examples=300, deadline=None)
@given(word=st.text(max_size=12), candidates=st.lists(st.text(min_size=1, max_size=10), max_size=8))
def test_a_suggestion_is_always_one_of_the_real_choices(word: str, candidates: list[str]) -> None:
    guess = nearest(word, candidates)
    assert guess is None or guess in candidates
    if word in candidates:
        assert guess == word
