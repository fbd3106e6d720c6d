"""A stand-in for the process of a ``watch --exec`` hook.

The hooks' debounce is tested both in ``tests/test_watch_cmd_units.py`` (one at a time,
one a second, coalesced per key) and in ``tests/test_webhook_security.py`` (a hundred
flips in two seconds, a flip and back while waiting); both ask a hook's process only
whether it is done, and say when it is, so they share this one stand-in. Each file keeps
its own spawner: they record different things about each run.
"""

from __future__ import annotations


class HookProc:
    """A hook's process that runs until a test sets ``done`` (``poll`` then answers 0)."""

    def __init__(self) -> None:
        self.done = False

    def poll(self) -> int | None:
        return 0 if self.done else None
