"""A Redis Sentinel deployment on loopback: one master, one replica, three sentinels."""

from __future__ import annotations

import signal
import subprocess
import tempfile
from pathlib import Path

import redis

from tests.support.helpers import RedisServer, free_port, require_binary, wait_for
from tests.support.processes import spawn, stop


class SentinelSet:
    """Master, replica and three sentinels watching ``mymaster``."""

    MASTER = "mymaster"

    def __init__(self) -> None:
        self.master = RedisServer().start()
        self.replica = RedisServer("--replicaof", "127.0.0.1", str(self.master.port)).start()
        self.dir = Path(tempfile.mkdtemp(prefix="petsage-sentinel-"))
        self.ports = [free_port() for _ in range(3)]
        self.procs: list[subprocess.Popen[bytes]] = []
        binary = require_binary("redis-server")
        for port in self.ports:
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {self.MASTER} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER} 1000\n"
                f"sentinel failover-timeout {self.MASTER} 5000\n"
                f"sentinel parallel-syncs {self.MASTER} 1\n")
            self.procs.append(spawn([binary, str(conf), "--sentinel"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            wait_for(self._ready, 30, what="sentinels seeing the replica and each other")
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"sentinel://{hosts}/0?master={self.MASTER}"

    def sentinel(self, port: int | None = None) -> redis.Redis:
        return redis.Redis(port=port or self.ports[0], socket_timeout=2, decode_responses=True)

    def master_port(self) -> int:
        _host, port = self.sentinel().execute_command("SENTINEL", "get-master-addr-by-name",
                                                     self.MASTER)
        return int(port)

    def _ready(self) -> bool:
        for port in self.ports:
            s = self.sentinel(port)
            if not s.execute_command("SENTINEL", "replicas", self.MASTER):
                return False
            if len(s.execute_command("SENTINEL", "sentinels", self.MASTER)) < 2:
                return False
        return True

    def close(self) -> None:
        for proc in self.procs:
            stop(proc, signal.SIGKILL)
        self.replica.close()
        self.master.close()
