"""``petsage-heartbeat watch``: transitions with and without heartbeats, hooks, Redis restarts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import redis

from tests.support.helpers import STARTUP_S, Proc, RedisServer, cli_argv, heartbeat_env, wait_for
from tests.support.publishing import publish

HOOK = 'printf "%s %s %s %s %s|%s\\n" "$PETSAGE_SERVICE" "$PETSAGE_OLD_STATE" ' \
       '"$PETSAGE_NEW_STATE" "$PETSAGE_AGE_S" "$PETSAGE_DIAGNOSIS" "$PETSAGE_REASON" ' \
       '>> "$PETSAGE_HOOK_LOG"'


def _events(proc: Proc) -> list[dict[str, object]]:
    events = []
    for line in proc.output().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def _transitions(proc: Proc) -> list[tuple[object, object]]:
    return [(e["old_state"], e["new_state"]) for e in _events(proc)]


def test_watch_sees_staleness_without_any_message_runs_hooks_and_survives_restarts(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    hook_log = tmp_path / "hook.log"
    env = heartbeat_env(own_redis.url, PETSAGE_HOOK_LOG=str(hook_log))
    watch = Proc(cli_argv("watch", "--json", "--poll", "0.1", "--timeout", "0.5",
                          "--exec", HOOK), env, tmp_path, "watch")
    procs.append(watch)
    client = own_redis.client()
    wait_for(lambda: ("unknown", "missing") in _transitions(watch), STARTUP_S,
             what="missing at start")  # the start of a process: no promise

    publish(client, interval_s=0.5)  # late after 0.75 s, stale after 1.5 s; nothing follows
    wait_for(lambda: ("missing", "fresh") in _transitions(watch), 5, what="fresh on arrival")
    wait_for(lambda: ("late", "stale") in _transitions(watch), 5,
             what="late then stale with no heartbeat arriving")
    assert _transitions(watch)[-3:] == [("missing", "fresh"), ("fresh", "late"), ("late", "stale")]
    stale = _events(watch)[-1]
    assert stale["service"] == "petsage" and isinstance(stale["age_s"], float)
    assert stale["age_s"] > 1.5 and "over 1.5s" in str(stale["reason"])
    assert stale["diagnosis"] == "beat_down"  # no beat marker was ever written here

    def hook_lines() -> list[str]:
        return hook_log.read_text().splitlines() if hook_log.exists() else []

    # Hooks are debounced (one a second): fresh -> late -> stale within a second may
    # reach the hook as one transition from the state it was last told of.
    wait_for(lambda: any(" stale " in line for line in hook_lines()), 5,
             what="the --exec hook run for the stale transition")
    line = next(line for line in hook_lines() if " stale " in line)
    service, old, new, age, diagnosis = line.split("|")[0].split()
    assert (service, new, diagnosis) == ("petsage", "stale", "beat_down")
    assert old in ("fresh", "late")
    assert float(age) > 1.5

    own_redis.kill()
    wait_for(lambda: _transitions(watch)[-1] == ("stale", "unreachable"), 10,
             what="unreachable while Redis is down")
    own_redis.start()
    wait_for(lambda: _transitions(watch)[-1] == ("unreachable", "missing"), 15,
             what="resumed after the restart (no persistence: missing)")
    publish(redis.Redis(port=own_redis.port), interval_s=0.5)
    wait_for(lambda: _transitions(watch)[-1][1] in ("fresh", "late", "stale")
             and ("missing", "fresh") in _transitions(watch)[-3:], 5,
             what="fresh again after the restart")
    assert watch.alive()


def test_watch_all_follows_every_service(own_redis: RedisServer, procs: list[Proc],
                                         tmp_path: Path) -> None:
    env = heartbeat_env(own_redis.url)
    client = own_redis.client()
    publish(client, "api", interval_s=0.5)
    watch = Proc(cli_argv("watch", "--all", "--poll", "0.1"), env, tmp_path, "watch")
    procs.append(watch)

    def api_seen_fresh() -> bool:
        # api keeps publishing while watch starts: a start slower than api's 0.75 s of
        # freshness (a busy machine) first sees it late, then fresh again.
        publish(client, "api", interval_s=0.5)
        return re.search(r"\bapi \w+ -> fresh", watch.output()) is not None

    # the first line is the start of a process: no promise, only a bound on a broken start
    wait_for(api_seen_fresh, STARTUP_S, interval_s=0.2, what="api seen")
    publish(client, "billing", interval_s=60)
    wait_for(lambda: "billing unknown -> fresh" in watch.output(), 5, what="a new service seen")
    wait_for(lambda: "api late -> stale" in watch.output(), 5, what="api going stale")
    assert "billing fresh ->" not in watch.output()
