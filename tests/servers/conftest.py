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
