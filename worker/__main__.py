"""``python -m worker``: the same as the ``petsage-heartbeat`` command."""

from worker.cli.main import main

raise SystemExit(main())
