"""The one shape of every daemon the emulation runs, after IPMininet's ``Daemon``: a config (a
model rendered through a template and dry-run checked before it is written), a start line, the
log its output is appended to, the pid file it writes, a ready check, and a stop with a deadline.

An instance says *what* runs (etcd, BIRD in its three roles, calico-node and the route
reflector, the node zygote, dockerd: each defined beside its owner); the code that starts it says
*where*, by the popen it passes (a Mininet host's, subprocess's) or by awaiting ``start_async``
inside an event loop (confd's BIRD).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from . import pids


class DaemonError(RuntimeError):
    """A daemon did not start: its config was refused, it exited, or it did not answer in time."""


class Daemon:
    """What every daemon has; subclasses give ``command``, ``log`` and, where they have them,
    ``ready``, ``prepare`` and ``pid_file``.  One with a config file writes it before its start
    (BIRD's ``configure``: its model rendered, `bird -p` as the dry run)."""

    name = "daemon"  # in messages: "etcd", "BIRD in tor1", ...
    start_timeout = 20.0  # seconds from the start line to the ready check's first yes
    ready_interval = 0.05
    stop_timeout = pids.STOP_TIMEOUT
    pid_file: Path | None = None  # the pid file the daemon writes, if it writes one
    log: Path  # where its output is appended (a field or a property of each daemon)

    def command(self) -> list[str]:
        """The start line."""
        raise NotImplementedError

    def ready(self) -> bool:
        """The ready check: whether it answers now (its socket exists, or answers a request)."""
        return True

    def prepare(self) -> None:
        """What must be in place before the start line runs (e.g. no socket of a killed one)."""

    def start(self, popen: Callable[..., subprocess.Popen] = subprocess.Popen, **options) -> subprocess.Popen:
        """prepare, then the start line through popen (e.g. a Mininet host's), its output appended to the log."""
        self.prepare()
        with open(self.log, "ab") as logfile:
            return popen(self.command(), stdout=logfile, stderr=subprocess.STDOUT, **options)

    async def start_async(self, **options):
        """start, as an asyncio child of the running event loop."""
        import asyncio  # here and in await_ready only: `calicoctl node run` does not import it

        self.prepare()
        with open(self.log, "ab") as logfile:
            return await asyncio.create_subprocess_exec(*self.command(), stdout=logfile, stderr=subprocess.STDOUT,
                                                        **options)

    def wait_ready(self, process: subprocess.Popen) -> None:
        """Poll the ready check until it says yes; DaemonError if the process exits or
        start_timeout passes."""
        for pause in self._until_ready(process.poll):
            time.sleep(pause)

    async def await_ready(self, process) -> None:
        """wait_ready for an asyncio child, without blocking its event loop between checks."""
        import asyncio

        for pause in self._until_ready(lambda: process.returncode):
            await asyncio.sleep(pause)

    def _until_ready(self, exit_code: Callable[[], int | None]) -> Iterator[float]:
        """The pauses between ready checks (one polling loop for both kinds of waiting)."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = exit_code()
            if code is not None:
                raise DaemonError(f"{self.name} exited with code {code}; see {self.log}")
            if self.ready():
                return
            if time.monotonic() > deadline:
                raise DaemonError(f"{self.name} did not answer within {self.start_timeout:.0f}s; see {self.log}")
            yield self.ready_interval

    def running_pid(self) -> int | None:
        """The PID in its pid file, if that process is alive."""
        return pids.from_file(self.pid_file) if self.pid_file is not None else None

    def stop(self, process: subprocess.Popen) -> None:
        """SIGTERM, SIGKILL after stop_timeout, reaped."""
        stop_all([process], self.stop_timeout)


def stop_all(processes: list[subprocess.Popen], timeout: float = pids.STOP_TIMEOUT) -> None:
    """Stop daemons started with ``Daemon.start``: all signalled at once, then each reaped."""
    pids.stop([process.pid for process in processes], timeout)
    for process in processes:
        process.wait()
