"""The container runtime's wait on descriptors (no root needed)."""

import os
import resource
import socket

import pytest

from calisim.docker.runtime import readable


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1200, reason="needs 1200 open files")
def test_the_daemon_watches_descriptors_above_1023():
    """select(2) cannot (a dockerd with 500 containers has more than a thousand descriptors)."""
    ours, theirs = socket.socketpair()
    copies = [os.dup(ours.fileno()) for _ in range(1100)]
    try:
        high = copies[-1]
        assert high > 1023 and readable([high], 0) == []
        theirs.send(b"x")
        assert sorted(readable([copies[0], high], 1)) == [copies[0], high]
        ours.recv(1)
        theirs.close()
        assert readable([high], 1) == [high]  # ended: readable, as select says
    finally:
        for fd in copies:
            os.close(fd)
        ours.close()

