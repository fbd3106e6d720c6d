"""The compact-summary floor a fleet read is measured against: the least a script can do.

    python -m bench.summary_baseline PORT [PREFIX]    # prints a JSON list, like status --all

One TIME, then HSCAN (COUNT 1000) of every summary shard, 128 shards a round trip (as the
real read pipelines them), ``orjson.loads`` of each value, the age on the Redis clock:
fresh when the age is at most 1.5 intervals (never beyond the stale threshold) and the
status ``ok``, else stale. No full
read of the services not fresh, no validation, diagnosis or nodes: the floor.
"""

from __future__ import annotations

import sys

import orjson
import redis

SHARDS = 2048
PER_ROUND_TRIP = 128


def main() -> None:
    port, prefix = int(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "petsage:hb")
    client = redis.Redis(port=port)
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    out = []
    pending = [(shard, 0) for shard in range(SHARDS)]
    while pending:
        batch, pending = pending[:PER_ROUND_TRIP], pending[PER_ROUND_TRIP:]
        pipe = client.pipeline(transaction=False)
        for shard, cursor in batch:
            pipe.hscan(f"{prefix}:summary:{{{shard:04d}}}", cursor, count=1000)
        for (shard, _), (cursor, fields) in zip(batch, pipe.execute(), strict=True):
            if cursor:
                pending.append((shard, cursor))
            for name, raw in fields.items():
                data = orjson.loads(raw)
                age_s = (now_ms - data["ts_ms"]) / 1000
                late_after_s = min(1.5 * data["interval_s"], data["stale_after_s"])
                fresh = age_s <= late_after_s and data["status"] == "ok"
                out.append({"service": name.decode(), "state": "fresh" if fresh else "stale",
                            "age_s": age_s, "seq": data["seq"]})
    sys.stdout.buffer.write(orjson.dumps(out) + b"\n")


if __name__ == "__main__":
    main()
