"""Mininet's cluster edition on simulated servers: a host on each of two servers, joined by a
VXLAN link, pinging at the link's full MTU with DF; nothing of them left once the net stops."""

import time

import pytest
from mininet.net import Mininet

from calisim.servers.cluster import remote_host_class, vxlan_link_class
from calisim.servers.links import VXLAN_OVERHEAD
from calisim.servers.sim import UNDERLAY_MTU

from tests.servers.conftest import mininet_processes

pytestmark = pytest.mark.emulation
LINK_MTU = UNDERLAY_MTU - VXLAN_OVERHEAD


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
