"""A user check module, as a team would write one, named in HEARTBEAT_CHECKS."""

from __future__ import annotations


def ping_db() -> str:
    """Pretend database ping that reports degraded."""
    return "degraded"
