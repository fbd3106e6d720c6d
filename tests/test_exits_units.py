"""``fail``: one line, flushed at once, on the stream and with the exit code of the command."""

from __future__ import annotations

import io

import pytest

from worker.core.exits import NAGIOS_UNKNOWN, RUNTIME_ERROR, USAGE_ERROR, fail


class _Recorder(io.StringIO):
    """A stream that remembers what it held at each flush: a line left in a buffer is lost
    when a probe is killed at its deadline, so the line must be flushed as it is printed."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())
        super().flush()


@pytest.mark.parametrize("command", ["check", "status"])
def test_a_probe_fails_with_one_unknown_line_on_stdout_flushed(
        command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = _Recorder(), _Recorder()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    assert fail(command, "bad\n  flag\tvalue", runtime=True) == NAGIOS_UNKNOWN
    line = "UNKNOWN - petsage-heartbeat: bad flag value\n"
    assert out.getvalue() == line and out.flushed == [line]
    assert err.getvalue() == "" and err.flushed == []


@pytest.mark.parametrize(("runtime", "code"), [(False, USAGE_ERROR), (True, RUNTIME_ERROR)])
@pytest.mark.parametrize("command", ["serve", "monitor", None])
def test_another_command_fails_with_one_line_on_stderr_flushed(
        command: str | None, runtime: bool, code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = _Recorder(), _Recorder()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    assert fail(command, " no\nsuch  service ", runtime=runtime) == code
    line = "petsage-heartbeat: no such service\n"
    assert err.getvalue() == line and err.flushed == [line]
    assert out.getvalue() == "" and out.flushed == []
    assert (USAGE_ERROR, RUNTIME_ERROR, NAGIOS_UNKNOWN) == (2, 1, 3)
