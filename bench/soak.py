"""Soak: real beat and worker at a 0.5 s interval, ``check`` every second; count false alarms.

    python -m bench.soak [--seconds 600]

Nothing is broken during the run, so every ``late`` or ``stale`` is a false alarm. Prints
the tally as a markdown table; exits non-zero only if the run could not happen.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BIN, BenchError, RedisProcess, machine, table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    server = RedisProcess()
    workdir = Path(tempfile.mkdtemp(prefix="petsage-soak-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTBEAT_", "CELERY_"))}
    env.update(CELERY_BROKER_URL=server.url, HEARTBEAT_INTERVAL_S=str(args.interval))
    base = [sys.executable, "-m", "celery", "-A", "worker"]
    procs = []
    try:
        for name, argv in (("beat", [*base, "beat"]),
                           ("worker", [*base, "worker", "-Q", "heartbeat.petsage",
                                       "--without-mingle",
                                       "--without-gossip"])):
            log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append(subprocess.Popen(argv, env=env, cwd=workdir, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        exe = BIN / "petsage-heartbeat"
        check = [str(exe)] if exe.exists() else [sys.executable, "-m", "worker"]
        deadline = time.monotonic() + 60
        while subprocess.run([*check, "check"], env=env, capture_output=True,
                             check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise BenchError("the pipeline never became fresh")
            time.sleep(0.2)
        tally: collections.Counter[str] = collections.Counter()
        worst_age = 0.0
        end = time.monotonic() + args.seconds
        next_tick = time.monotonic()
        while time.monotonic() < end:
            done = subprocess.run([*check, "check", "--json"], env=env, capture_output=True,
                                  text=True, check=False)
            report = json.loads(done.stdout)
            tally[report["state"]] += 1
            worst_age = max(worst_age, report["age_s"] or 0.0)
            if any(p.poll() is not None for p in procs):
                raise BenchError("beat or the worker died during the soak")
            next_tick += 1.0
            time.sleep(max(next_tick - time.monotonic(), 0))
        checks = sum(tally.values())
        false_alarms = tally["late"] + tally["stale"]
        print(f"### Soak ({args.seconds} s at a {args.interval:g} s interval, one check a second; "
              f"{machine()})\n")
        print(table(["checks", "fresh", "late", "stale", "other", "false alarms",
                     "oldest age seen s"],
                    [(checks, tally["fresh"], tally["late"], tally["stale"],
                      checks - tally["fresh"] - false_alarms, false_alarms, worst_age)]))
    except BenchError as exc:
        print(f"soak failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for proc in procs:
            os.killpg(proc.pid, 9)
            proc.wait(10)
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
