"""A dead server ends the run: a thread that asks every server, every second, whether it still
runs and answers ssh, and on the first failure interrupts the run's main thread with ServerLost
(one line naming the server and what is gone).  The run then unwinds through its usual clean-up,
which stops what it started on every other server.

A run blocked on a dead server (a remote shell whose ssh hangs) would otherwise wait for ever:
the failure is delivered as a real signal to the main thread, which interrupts the blocking call.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from typing import Callable

INTERVAL = 1.0  # a dead server is named within about this, plus one check's time (ssh's ConnectTimeout: 5 s)
SIGNAL = signal.SIGUSR2  # how the watchdog's thread reaches the main thread


class ServerLost(RuntimeError):
    """A server of the run died or stopped answering ssh; the message names it and what is gone."""


Check = Callable[[], list[str]]  # one line for each server that is gone; [] while all run


@dataclass
class Watchdog:
    """Watches a run's servers with check (``SimServers.failures``, real servers' sandboxes too)
    while held; raises ServerLost in the main thread once one fails.  Start and stop it from the
    main thread (it installs its signal's handler there)."""

    check: Check
    interval: float = INTERVAL
    failure: str | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _previous: object = None

    def start(self) -> "Watchdog":
        self._previous = signal.signal(SIGNAL, self._raise)
        self._thread = threading.Thread(target=self._watch, name="server-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (the run is stopping its servers itself: their going is no failure)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        if self._previous is not None:
            signal.signal(SIGNAL, self._previous)

    def __enter__(self) -> "Watchdog":
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _watch(self) -> None:
        main = threading.main_thread().ident
        while not self._stopping.wait(self.interval):
            failures = self.check()
            if failures and not self._stopping.is_set():
                self.failure = failures[0]
                signal.pthread_kill(main, SIGNAL)
                return

    def _raise(self, _signum: int, _frame: object) -> None:
        if self.failure is not None and not self._stopping.is_set():
            raise ServerLost(self.failure)

