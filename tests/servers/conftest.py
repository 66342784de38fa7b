from pathlib import Path

import pytest

from calisim.emulation.rundir import RunDir
from calisim.servers.sim import SimServers


@pytest.fixture(scope="module")
def sim():
    """Two simulated servers for a test module, in a run directory of their own (pytest's
    tmp_path may be pruned by another pytest session meanwhile)."""
    servers = SimServers(RunDir.create("sim-servers").path, 2)
    servers.start()
    yield servers
    servers.stop()


def mininet_processes(server) -> list[int]:
    """The server's processes that are Mininet's (its remote shells run as `bash ... mininet:NAME`)."""
    found = []
    for pid in server.processes():
        try:
            if b"mininet:" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found
