"""The ``petsage-heartbeat`` command and its subcommands (``worker.cli:main``)."""

from worker.cli.main import main

__all__ = ["main"]
