"""A user check module, as a team would write one, named in HEARTBEAT_CHECKS."""

from __future__ import annotations


def ping_db() -> str:
    """Pretend database ping that reports degraded."""
    return "degraded"


def raise_300_kb() -> None:
    """A check whose error message is 300 KB long (a dumped response, say)."""
    raise RuntimeError("x" * 300_000)
