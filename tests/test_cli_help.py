"""Every flag of the three commands says what it does and its default in one line."""

import argparse
from collections.abc import Iterator

import pytest

from deploy.cli import _parser as deploy_parser
from edge_inspector.cli import _parser as inspector_parser
from trainer.cli import _parser as train_parser


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


@pytest.mark.parametrize("make", [train_parser, deploy_parser, inspector_parser], ids=["train", "deploy", "inspector"])
def test_every_flag_has_a_one_line_help_with_its_default(make) -> None:
    for parser in _parsers(make()):
        parser.format_help()  # a stray '%' in a help text would raise here
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            where = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and "\n" not in action.help, where
            if action.option_strings:  # a flag: its default, or that it is required
                assert "default" in action.help or "required" in action.help, where
