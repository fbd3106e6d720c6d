"""The fixed clock of the incident summaries' in-process tests, and their way of writing one
entry of an incident stream.

``tests/test_incidents_units.py`` (the arithmetic and the read) and
``tests/test_incidents_more_units.py`` (the read's commands, amended diagnoses, the
windows' edges) pin the same summaries on the same clock; one copy keeps the windows they
measure and the entries they build the same in both.
"""

from __future__ import annotations

from worker.read.incidents import Transition

H = 3_600_000
"""An hour, in milliseconds (the streams' unit)."""
D = 24 * H
"""A day, in milliseconds."""
NOW = 100 * D
"""The Redis clock of every summary: 100 days, so the longest window (30 days) and entries
older than it all stay after 0."""


def transition(at_ms: int, old: str, new: str, diagnosis: str = "", reason: str = "",
               kind: str = "transition") -> Transition:
    """One stream entry at ``at_ms``, its ID derived from its time (``<at_ms>-0``):
    a transition, or with ``kind="diagnosis"`` a diagnosis amended."""
    return Transition(f"{at_ms}-0", old, new, diagnosis, reason, at_ms, kind)
