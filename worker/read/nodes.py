"""Worker nodes of a service: each one's last node heartbeat, judged on the Redis clock.

Every worker that consumes a service's queue renews its record in ``{prefix}:{service}:nodes``
(a sorted set: member = Celery node name, score = ts_ms) from a broadcast that each of them
receives. A hung worker stops renewing its own record even while a healthy replica keeps
the service heartbeat fresh, so a probe of one pod looks at that pod's node.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from worker.core.redis_io import as_text
from worker.core.states import State, Thresholds, state_for

FLEET_NODES_LIMIT = 128
"""Most recent nodes per service a fleet read returns (status, dashboard, metrics)."""

PROBE_NODES_LIMIT = 1000
"""Most recent nodes per service ``check --node`` looks through."""


class NodeReport(NamedTuple):
    """One worker node's last node heartbeat."""

    node: str  #: Celery node name, e.g. ``heartbeat@pod-7``
    state: State  #: fresh, late or stale by the service's thresholds
    age_s: float  #: seconds since its last node heartbeat, on the Redis clock
    ts_ms: int  #: its last node heartbeat, epoch ms on the Redis clock



def judge_nodes(now_ms: int, raw: Any, thresholds: Thresholds) -> tuple[NodeReport, ...]:
    """Judge a ``ZREVRANGE ... WITHSCORES`` reply (flat: member, score, ...); never raises."""
    if not isinstance(raw, list):
        return ()
    nodes = []
    for member, score in zip(raw[0::2], raw[1::2], strict=False):
        try:
            ts_ms = int(float(as_text(score)))
        except ValueError:
            continue
        age_s = max(now_ms - ts_ms, 0) / 1000
        nodes.append(NodeReport(as_text(member)[:255], state_for(age_s, "ok", thresholds),
                                age_s, ts_ms))
    return tuple(nodes)


def matches(node: str, wanted: str) -> bool:
    """``wanted`` names ``node``: the whole Celery node name, or its host part (a pod name)."""
    return node == wanted or node.partition("@")[2] == wanted


def node_counts(nodes: tuple[NodeReport, ...]) -> str:
    """``2/3 fresh`` and which are not, for a table cell."""
    fresh = sum(n.state is State.FRESH for n in nodes)
    text = f"{fresh}/{len(nodes)}"
    behind = [n.node for n in nodes if n.state is not State.FRESH]
    if behind:
        text += f" ({', '.join(behind[:3])}{', ...' if len(behind) > 3 else ''} not fresh)"
    return text


def node_summaries(nodes: tuple[NodeReport, ...]) -> list[dict[str, Any]]:
    """JSON-ready nodes: name, state and age."""
    return [{"node": n.node, "state": n.state.value, "age_s": round(n.age_s, 3)} for n in nodes]


def second_beat(now_ms: int | None, marker: dict[str, Any] | None) -> str | None:
    """The id of another beat seen publishing for the same service recently, or None.

    Beat's marker script records it when it finds a publish by another beat since its own
    last one: two beats interleaving (a rollout mistake), never a beat that restarted.
    """
    if marker is None or now_ms is None:
        return None
    other = marker.get("other_beat")
    interval_s = marker.get("interval_s")
    if not isinstance(other, dict) or not isinstance(interval_s, int | float):
        return None
    window_ms = 10 * float(interval_s) * 1000
    seen_ms, beat_id = other.get("seen_at_ms"), other.get("beat_id")
    if type(seen_ms) is not int or not isinstance(beat_id, str):
        return None
    if now_ms - seen_ms > window_ms:
        return None
    return beat_id[:100]


def describe_beats(marker: dict[str, Any] | None, other: str) -> str:
    """The two-beats warning, for a reason line."""
    mine = marker.get("beat_id") if marker else None
    return (f"two beats publish for this service ({json.dumps(mine)} and {json.dumps(other)}): "
            "run exactly one")
