"""Redis helpers both paths share, without importing redis-py.

Commands as tuples, one round trip for several of them (on the probe's own client or on
redis-py), the ``TIME`` reply in milliseconds, replies as text, telling a Cluster client
apart, and loading the Lua scripts that live as files beside the modules that run them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, cast

Command = tuple[str | bytes | int | float, ...]
"""One Redis command: its name and arguments."""


def lua_script(package: str, name: str) -> str:
    """The source of the Lua script ``name`` kept beside the modules of ``package``.

    Read from the package's folder when it is one (every install but a zip): importing
    ``importlib.resources`` (zipfile, tempfile ...) would cost ``check``, which loads the
    read script, about 10 ms of CPU, more than the whole probe's own work.
    """
    origin = getattr(sys.modules.get(package), "__file__", None)
    if origin:
        try:
            with open(os.path.join(os.path.dirname(origin), name), encoding="utf-8") as file:
                return file.read()
        except OSError:
            pass  # no folder there (a zip): the package's importer knows where its data is
    from importlib import resources

    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


def is_cluster_client(client: Any) -> bool:
    """True for redis-py's ``RedisCluster`` (checked by shape, so readers import nothing)."""
    return hasattr(client, "nodes_manager")


def execute_many(client: Any, commands: Sequence[Command]) -> list[Any]:
    """Run ``commands`` in one round trip on the probe's client or a redis-py client.

    Replies come back in order; an error reply is an exception instance in its place,
    never raised, as in a redis-py pipeline with ``raise_on_error=False``.
    """
    if hasattr(client, "execute_many"):  # the probe's own client
        return cast(list[Any], client.execute_many(commands))
    if len(commands) == 1 and not is_cluster_client(client):
        # One command needs no pipeline object: saves its overhead on every single read.
        try:
            return [client.execute_command(*commands[0])]
        except Exception as exc:
            # An error reply (redis-py's ResponseError and its subclasses, named rather than
            # imported: the reader doesn't import redis-py) is a value, as in a pipeline.
            if any(cls.__name__ == "ResponseError" for cls in type(exc).__mro__):
                return [exc]
            raise
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return cast(list[Any], pipe.execute(raise_on_error=False))


def redis_time_ms(reply: Any) -> int:
    """Convert a ``TIME`` reply (seconds, microseconds) to epoch milliseconds."""
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


def as_text(value: Any) -> str:
    """A reply as text; bytes that are not UTF-8 become U+FFFD, never an exception.

    Anyone with write access can store any bytes: a bad value is judged, not a crash.
    """
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def as_bytes(value: Any) -> bytes:
    """A reply as bytes."""
    return value if isinstance(value, bytes) else str(value).encode()
