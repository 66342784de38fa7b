"""A termination signal that ends a run by unwinding its clean-up (``Cluster.stop()`` and the
like), in the process that asked for it and in no copy of it."""

from __future__ import annotations

import os
import signal


def unwind_on(*signums: int) -> None:
    """Turn each of signums into ``SystemExit(128 + signum)`` in this process.

    A fork of this process inherits the handler but must not unwind: pyroute2 forks to open a
    socket in another network namespace and ends that copy with SIGTERM, and a copy that unwound
    would run the run's clean-up (stop its servers by PID, remove its ssh control directory) from
    under the run still going on in this process.  A copy exits at once instead.
    """
    owner = os.getpid()

    def unwind(signum: int, _frame: object) -> None:
        if os.getpid() != owner:
            os._exit(128 + signum)
        raise SystemExit(128 + signum)

    for signum in signums:
        signal.signal(signum, unwind)
