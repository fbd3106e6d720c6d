"""A 3-master Redis Cluster on loopback ports, made with redis-server and redis-cli."""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import redis

from tests.support.helpers import require_binary, wait_for
from tests.support.processes import run as run_process
from tests.support.processes import spawn, stop


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, so at most 55535."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free pair of ports for a cluster node")


class RedisClusterSet:
    """Three masters, no replicas, all 16384 slots assigned."""

    def __init__(self) -> None:
        server, cli = require_binary("redis-server"), require_binary("redis-cli")
        self.dir = Path(tempfile.mkdtemp(prefix="petsage-cluster-"))
        self.ports = [_cluster_port() for _ in range(3)]
        self.procs = [
            spawn(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "2000",
                 "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for port in self.ports
        ]
        try:
            wait_for(lambda: all(self._node(p).ping() for p in self.ports), 15, what="nodes up")
            run_process([cli, "--cluster", "create",
                         *(f"127.0.0.1:{port}" for port in self.ports),
                         "--cluster-replicas", "0", "--cluster-yes"],
                        check=True, capture_output=True, timeout=60)
            wait_for(self._ok, 30, what="cluster_state:ok on every node")
        except BaseException:
            self.close()
            raise

    def _node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2)

    def _ok(self) -> bool:
        return all(b"cluster_state:ok" in self._node(p).execute_command("CLUSTER", "INFO")
                   for p in self.ports)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0?cluster=true"

    def close(self) -> None:
        for proc in self.procs:
            stop(proc, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
