"""How long a liveness probe has found its component's record absent: a small state file.

A store that restarted empty has no beat marker and no node records, and neither has a
store whose beat never ran. One reading can't tell them apart; time can: a live beat (or
worker) writes its record within an interval of the store taking writes again. So a
liveness probe that finds its component's record absent, on a store that takes writes,
notes when it first found it so in a file, and fails only once the record has stayed
absent for longer than the threshold since then.

The file is ``$TMPDIR/petsage-heartbeat-liveness-<hash>.json`` (``/tmp`` without
``TMPDIR``), one per store, prefix, service and component (the hash of the redacted store
URL, the prefix, the service and ``beat`` or ``node:NAME``), holding
``{"run_id": ..., "absent_since": <epoch s>}``. ``run_id`` is the store's own (``INFO``):
a store that restarted since gives the component a whole threshold again. The file is
removed as soon as the record is back. A file that can't be read, parsed or written makes
the probe say it cannot tell, and pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from worker.core.urls import redact


class Absence(NamedTuple):
    """What the state file says about a record found absent now."""

    absent_s: float | None  #: how long this probe has found it absent; None: can't tell
    problem: str  #: why it can't tell (the state file), or ''


def state_path(redis_url: str, prefix: str, service: str, component: str) -> Path:
    """The state file of one component of one service on one store."""
    key = "\n".join((redact(redis_url), prefix, service, component)).encode()
    digest = hashlib.sha256(key).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"petsage-heartbeat-liveness-{digest}.json"


def absent_for(path: Path, run_id: str, *, now_s: float | None = None) -> Absence:
    """Note that the record is absent now; how long it has been, as far as the file knows."""
    now_s = time.time() if now_s is None else now_s
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = None
    except ValueError:
        return _restart(path, run_id, now_s, f"liveness state file {path} corrupt")
    except OSError as exc:
        return _restart(path, run_id, now_s, f"liveness state file {path} unreadable "
                                             f"({type(exc).__name__})")
    if data is not None:
        since = data.get("absent_since") if isinstance(data, dict) else None
        if (not isinstance(since, int | float) or isinstance(since, bool)
                or not 0 < since <= now_s + 1 or not isinstance(data.get("run_id"), str)):
            return _restart(path, run_id, now_s, f"liveness state file {path} corrupt")
        if data["run_id"] == run_id:
            return Absence(max(now_s - float(since), 0.0), "")
    return _restart(path, run_id, now_s, "")


def _restart(path: Path, run_id: str, now_s: float, problem: str) -> Absence:
    """Start the clock now; a problem (the old file's, or this write's) means can't tell."""
    try:
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps({"run_id": run_id, "absent_since": now_s}),
                           encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        return Absence(None, problem or f"liveness state file {path} not writable "
                                        f"({type(exc).__name__})")
    return Absence(None, problem) if problem else Absence(0.0, "")


def present(path: Path) -> None:
    """The record is there: forget any absence (never raises)."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
