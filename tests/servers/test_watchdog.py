"""A dead server ends the run: with Mininet's remote hosts on two simulated servers and a run
blocked in a long step, killing the second server's sshd or its PID 1 interrupts the run within
30 s with one line naming that server and what is gone; once the run has stopped its hosts,
nothing of them is left on any server, and the caller's namespace is as it was."""

import os
import signal
import time
from pathlib import Path

import pytest
from mininet.net import Mininet

from calisim.emulation.rundir import RunDir
from calisim.process import pids
from calisim.servers.cluster import remote_host_class
from calisim.servers.sim import SimServers
from calisim.servers.watchdog import ServerLost, Watchdog

from tests.servers.conftest import mininet_processes

pytestmark = pytest.mark.emulation
STEP = "sleep 120"  # a run's step that outlasts the watchdog's 30 s: only the watchdog can end it in time


def listening_sshd(server) -> int:
    found = [pid for pid in pids.children(server.init_pid) if b"[listener]" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(found) == 1, "one listening sshd, a child of the server's PID 1"
    return found[0]


@pytest.mark.parametrize("kill, gone", [
    ("sshd", "server2: sshd does not answer on 198.18.0.3:22 (Connection refused)"),
    ("pid1", "server2: the server is gone (its PID 1, {pid} here, exited)"),
])
def test_a_dead_server_ends_the_run_naming_it_and_nothing_is_left(untouched, kill, gone):
    sim = SimServers(RunDir.create("watchdog").path, 2)
    sim.start()
    try:
        Mininet.inited = True  # never raise the sandbox's own sysctls
        net = Mininet(controller=None, build=False)
        hosts = [net.addHost(f"h{index}", cls=remote_host_class(sim.node_ssh_options()), server=server.name,
                             serverIP=str(server.address.ip), user="root") for index, server in enumerate(sim.servers, 1)]
        net.build()
        second = sim.servers[1]
        victim = listening_sshd(second) if kill == "sshd" else second.init_pid
        began = time.monotonic()
        try:
            with Watchdog(sim.failures, interval=0.5), pytest.raises(ServerLost) as lost:
                os.kill(victim, signal.SIGKILL)
                hosts[0].cmd(STEP)
        finally:
            net.stop()
        assert time.monotonic() - began < 30
        assert str(lost.value) == gone.format(pid=second.init_pid)
        for server in sim.servers:  # checked per server, before the servers themselves are stopped
            deadline = time.monotonic() + 10
            while mininet_processes(server) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert mininet_processes(server) == [], f"{server.name} still runs the run's shells"
    finally:
        assert sim.stop() == []

