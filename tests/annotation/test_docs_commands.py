"""Every `python -m annotation ...` that README.md and docs/annotation.md show names a command that exists
and only flags that command has (the README's block itself is run by test_annotation_readme.py)."""

import argparse
import re

import pytest

from annotation.__main__ import _parser
from tests.conftest import REPO_ROOT

DOCS = ("README.md", "docs/annotation.md")


def subcommands(parser: argparse.ArgumentParser) -> dict:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def shown_commands(doc: str) -> list[tuple[str, list[str]]]:
    """(command, its --flags) of each `python -m annotation COMMAND ...` in `doc`, continuation lines joined."""
    text = (REPO_ROOT / doc).read_text(encoding="utf-8").replace("\\\n", " ")
    return [(match.group(1), re.findall(r"(--[a-z][a-z-]*)", match.group(2)))
            for match in re.finditer(r"python -m annotation ([a-z-]+)([^`\n]*)", text)]


@pytest.mark.parametrize("doc", DOCS)
def test_the_docs_annotation_commands_and_flags_exist(doc):
    commands = subcommands(_parser())
    shown = shown_commands(doc)
    assert len(shown) >= 8, f"{doc}: the pattern found too few commands to mean anything"
    for command, flags in shown:
        assert command in commands, f"{doc}: python -m annotation {command}: no such command"
        parser = commands[command]
        if command == "users":
            parser = subcommands(parser)["add"]
        known = {option for action in parser._actions for option in action.option_strings}
        assert not set(flags) - known, f"{doc}: python -m annotation {command}: no such flag {sorted(set(flags) - known)}"
