"""docs/cli.md: every command's ``--help``, as the command prints it.

    python -m tests.support.cli_reference --write   # after changing a flag or a help text

The page is generated, not written by hand, so that it cannot drift from the parser;
``tests/test_cli_reference.py`` regenerates it and fails when the committed page differs.
The width is fixed (argparse wraps to the terminal's), so the page is the same everywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "cli.md"
WIDTH_COLUMNS = "100"

_HEADER = """\
# Command reference

Every command's `--help`, as `petsage-heartbeat` prints it (generated from the parser by
`python -m tests.support.cli_reference --write`; a test fails when this page and the
parser differ). The guides say when to use which: [probes](probes.md),
[entries](entries.md), [incidents](incidents.md), [HTTP](http.md).
"""


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its subparsers in a private action
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _section(name: str, parser: argparse.ArgumentParser) -> list[str]:
    return [f"## petsage-heartbeat{name}\n", "```text\n" + parser.format_help() + "```\n"]


def render() -> str:
    """The whole page, at a fixed width."""
    from worker.cli.main import _parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH_COLUMNS
    try:
        parser = _parser()
        sections = [_HEADER, *_section("", parser)]
        for name, sub in _subcommands(parser).items():
            sections += _section(f" {name}", sub)
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(sections)


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print("usage: python -m tests.support.cli_reference --write", file=sys.stderr)
        return 2
    PAGE.write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
