"""The package's exceptions: one base class, so callers can catch everything we raise."""

from __future__ import annotations


class HeartbeatError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(HeartbeatError, ValueError):
    """A setting, URL or name was refused; the message is one line for the user."""


class PayloadTooLargeError(HeartbeatError):
    """A payload over the size limit was refused before it reached Redis."""


class StoreUnreachableError(HeartbeatError):
    """The store could not be asked: connect, TLS, AUTH, a timeout, a closed socket, or a
    client library's error while asking. The message is one line, passwords hidden."""


class ReplyError(HeartbeatError):
    """An error reply from the server, kept as a value (like redis-py's ResponseError)."""


class UsageError(HeartbeatError):
    """The command line was refused; ``command`` is the subcommand being parsed."""

    def __init__(self, command: str | None, message: str) -> None:
        super().__init__(message)
        self.command = command
