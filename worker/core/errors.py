"""The package's exceptions: one base class, so callers can catch everything we raise."""

from __future__ import annotations


class HeartbeatError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(HeartbeatError, ValueError):
    """A setting, URL or name was refused; the message is one line for the user."""


class PayloadTooLargeError(HeartbeatError):
    """A payload over the size limit was refused before it reached Redis."""
