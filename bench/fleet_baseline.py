"""The plain baseline a fleet read is measured against: what any script would do.

    python -m bench.fleet_baseline PORT [PREFIX]      # prints a JSON list, like status --all

ZRANGE the index, one TIME, MGET of the values in chunks of 1,000, ``json.loads`` each,
the age on the Redis clock (fresh up to 1.5 intervals, never beyond the stale threshold),
and beat's markers (MGET, same chunks) for the services that are not fresh. No
validation, no diagnosis, no nodes: the floor, not a competitor.
"""

from __future__ import annotations

import json
import sys

import redis

CHUNK = 1000


def main() -> None:
    port, prefix = int(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "petsage:hb")
    client = redis.Redis(port=port)
    services = [m.decode() for m in client.zrange(f"{prefix}:index", 0, -1)]
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    out, stale = [], []
    for i in range(0, len(services), CHUNK):
        chunk = services[i:i + CHUNK]
        for service, raw in zip(chunk, client.mget([f"{prefix}:{{{s}}}" for s in chunk]),
                                strict=True):
            data = json.loads(raw) if raw else None
            age_s = None if data is None else (now_ms - data["ts_ms"]) / 1000
            fresh = age_s is not None and age_s <= min(1.5 * data["interval_s"],
                                                       data["stale_after_s"])
            out.append({"service": service, "state": "fresh" if fresh else "stale",
                        "age_s": age_s, "seq": None if data is None else data["seq"]})
            if not fresh:
                stale.append(len(out) - 1)
    for i in range(0, len(stale), CHUNK):
        part = stale[i:i + CHUNK]
        markers = client.mget([f"{prefix}:{{{out[j]['service']}}}:beat" for j in part])
        for j, raw in zip(part, markers, strict=True):
            out[j]["beat"] = json.loads(raw) if raw else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
