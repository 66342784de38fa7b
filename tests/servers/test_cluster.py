"""Mininet's cluster edition on simulated servers: a host on each of two servers, joined by a
VXLAN link, pinging at the link's full MTU with DF; nothing of them left once the net stops.
And a remote node's ssh clients forked without Python running in the child."""

import subprocess
import sys
import time

import pytest
from mininet.net import Mininet

from calisim.servers.cluster import remote_host_class, vxlan_link_class
from calisim.servers.links import VXLAN_OVERHEAD
from calisim.servers.sim import UNDERLAY_MTU

from tests.servers.conftest import mininet_processes

LINK_MTU = UNDERLAY_MTU - VXLAN_OVERHEAD


@pytest.mark.emulation
def test_hosts_on_two_servers_ping_across_a_vxlan_link_at_full_mtu(sim):
    Mininet.inited = True  # never raise the sandbox's own sysctls
    host_class = remote_host_class(sim.node_ssh_options())
    net = Mininet(controller=None, build=False)
    hosts = [net.addHost(f"h{index}", cls=host_class, server=server.name, serverIP=str(server.address.ip),
                         user="root", ip=f"10.0.0.{index}/24") for index, server in enumerate(sim.servers, 1)]
    net.addLink(*hosts, cls=vxlan_link_class())
    try:
        net.build()
        assert [host.cmd("hostname").strip() for host in hosts] == [server.name for server in sim.servers]
        assert all(mininet_processes(server) for server in sim.servers)
        assert hosts[0].cmd("ip -o link show h1-eth0").split("mtu ")[1].split()[0] == str(LINK_MTU)
        full = hosts[0].cmd(f"ping -c1 -W3 -M do -s {LINK_MTU - 28} 10.0.0.2")
        assert " 0% packet loss" in full, full
        too_big = hosts[0].cmd(f"ping -c1 -W2 -M do -s {LINK_MTU - 27} 10.0.0.2")
        assert "message too long" in too_big.lower(), too_big
    finally:
        net.stop()
    deadline = time.monotonic() + 10
    while any(mininet_processes(server) for server in sim.servers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(mininet_processes(server) for server in sim.servers)


@pytest.mark.emulation
def test_twelve_remote_nodes_on_one_server_all_answer(sim):
    """More than the ~10 nodes above which Mininet issue #1078 saw the cluster edition fail."""
    Mininet.inited = True
    server = sim.servers[1]
    net = Mininet(controller=None, build=False)
    hosts = [net.addHost(f"m{index}", cls=remote_host_class(sim.node_ssh_options()), server=server.name,
                         serverIP=str(server.address.ip), user="root") for index in range(12)]
    try:
        net.build()
        assert [host.cmd("echo $((6 * 7))").strip() for host in hosts] == ["42"] * len(hosts)
        assert len(mininet_processes(server)) >= len(hosts)
    finally:
        net.stop()


FORK_PROBE = """
import os, subprocess, sys
from calisim.servers.cluster import load_engine, remote_bases
os.register_at_fork(after_in_child=lambda: open(sys.argv[1], "w").close())
node = object.__new__(type("Probe", remote_bases(load_engine().Node), {}))
node.isRemote, node.user = False, None
child = node._popen([sys.executable, "-c", "import os; print(os.getpgrp() == os.getpid())"], stdout=subprocess.PIPE)
print(child.communicate()[0].decode().strip())
"""


def test_a_remote_nodes_ssh_client_gets_its_own_process_group_without_python_in_the_child(tmp_path):
    """Mininet's RemoteMixin set the group with a preexec_fn, which runs Python and its at-fork
    handlers in the forked child: in a controller with gRPC's threads that child died before
    ssh started, an empty answer (a handler registered here stands for gRPC's)."""
    marker = tmp_path / "at-fork handler ran in the child"
    probe = subprocess.run([sys.executable, "-c", FORK_PROBE, str(marker)], capture_output=True, text=True,
                           timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "True"  # its own process group, as Mininet's os.setpgrp gave it
    assert not marker.exists()
