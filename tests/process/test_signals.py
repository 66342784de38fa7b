"""unwind_on: SIGTERM unwinds the process that asked for it, and only that one (a fork, as
pyroute2 makes to open a socket in another namespace, must not run the run's clean-up)."""

from __future__ import annotations

import os
import signal

from calisim.process import signals


def _fork_and_terminate(body) -> tuple[int, bytes]:
    """Fork; the child runs body (which signals itself) and writes b"cleaned" in a finally.
    The child's exit code and what it wrote."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        try:
            try:
                body()
            finally:
                os.write(write, b"cleaned")
        except SystemExit as unwound:  # the child must not return into the test runner
            os._exit(unwound.code)
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    with os.fdopen(read, "rb") as pipe:
        return os.waitstatus_to_exitcode(status), pipe.read()


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    signal.pause()  # the handler runs before this returns


def test_the_owner_unwinds_through_its_clean_up():
    def owner():
        signals.unwind_on(signal.SIGTERM)  # installed in the child: it is the owner there
        _terminate_self()

    code, written = _fork_and_terminate(owner)
    assert code == 128 + signal.SIGTERM
    assert written == b"cleaned"


def test_a_fork_of_the_owner_exits_without_its_clean_up():
    previous = signal.getsignal(signal.SIGTERM)
    signals.unwind_on(signal.SIGTERM)  # installed here: the child is a copy of the owner
    try:
        code, written = _fork_and_terminate(_terminate_self)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 128 + signal.SIGTERM
    assert written == b""
