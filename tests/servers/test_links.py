"""A VXLAN link between two simulated servers carries full-size packets with DF set, and no more."""

import pytest

from calisim.servers.links import VXLAN_OVERHEAD, link_ends

@pytest.mark.emulation
def test_a_vxlan_link_between_servers_carries_its_mtu_with_df(sim):
    first, second = sim.servers
    ends = link_ends("xs1", 101, str(first.address.ip), str(second.address.ip))
    for server, end, address in ((first, ends[0], "10.99.0.1/30"), (second, ends[1], "10.99.0.2/30")):
        commands = end.create_commands() + [f"ip addr add {address} dev xs1"]
        result = sim.ssh(server, " && ".join(commands))
        assert result.returncode == 0, result.stderr
    assert ends[0].mtu == 1500 - VXLAN_OVERHEAD
    full = sim.ssh(first, f"ping -c1 -W3 -M do -s {ends[0].mtu - 28} 10.99.0.2")
    assert full.returncode == 0, full.stdout + full.stderr
    too_big = sim.ssh(first, f"ping -c1 -W2 -M do -s {ends[0].mtu - 27} 10.99.0.2")
    assert too_big.returncode != 0 and "message too long" in (too_big.stdout + too_big.stderr).lower()


def test_an_end_moved_into_a_node_is_up_there():
    end = link_ends("xs2", 7, "198.18.0.2", "198.18.0.3")[0]
    assert end.create_commands(netns_pid=42) == [
        "ip link add xs2 type vxlan id 7 local 198.18.0.2 remote 198.18.0.3 dstport 4789",
        "ip link set xs2 mtu 1450",
        "ip link set xs2 netns 42",
        "nsenter -t 42 -n ip link set xs2 up"]
