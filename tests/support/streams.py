"""Stand-ins for standard output and error in the commands' in-process tests.

``run`` and ``serve`` both promise that every line they print is flushed as it is printed
(a supervisor or ``| tee`` sees it at once), and ``status`` and ``watch`` both promise what
happens when the reader of their output goes away; the tests of each pair check the same
promise through the same stand-in, so it lives here once.
"""

from __future__ import annotations


class Stream:
    """A text stream that remembers where each flush happened (``print(flush=True)``)."""

    def __init__(self) -> None:
        self.text = ""
        self.flushed_at: list[int] = []

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        self.flushed_at.append(len(self.text))

    def line_ends(self) -> list[int]:
        """Where a flush is due if every line is flushed as it is printed."""
        return [i + 1 for i, c in enumerate(self.text) if c == "\n"]


class GoneReader:
    """Standard output whose reader went away (``| head``): every write is a broken pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        return self.fd
