"""The command reference (docs/cli.md) is every command's ``--help``, word for word."""

from __future__ import annotations

import pytest

from tests.support import cli_reference
from worker.cli.main import main


def test_the_reference_page_is_what_the_parser_prints() -> None:
    # A changed flag or help text fails here: run `python -m tests.support.cli_reference
    # --write` and review the page's diff like code.
    assert cli_reference.PAGE.read_text(encoding="utf-8") == cli_reference.render()


@pytest.mark.parametrize("command", ["check", "status", "watch", "serve", "monitor", "silence",
                                     "unsilence", "forget", "run"])
def test_each_command_prints_its_section_of_the_page(
        command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # The page is made from the parser; this holds it to what the command itself prints.
    monkeypatch.setenv("COLUMNS", cli_reference.WIDTH_COLUMNS)
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    page = cli_reference.PAGE.read_text(encoding="utf-8")
    assert f"## petsage-heartbeat {command}\n\n```text\n{printed}```\n" in page
