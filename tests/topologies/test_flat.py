"""The flat topology's options: route reflectors at 172.16.254.k and fd00:172:16::254:k, and options of other topologies
refused (no root needed)."""

import pytest

import topologies


def test_topology_options_stay_with_their_topology():
    with pytest.raises(ValueError, match="does not take --racks"):
        topologies.load("flat", racks=2)


def test_flat_route_reflectors_sit_at_172_16_254_k_and_fd00_172_16__254_k():
    topo = topologies.load("flat", 2, route_reflectors=2)
    assert topo.reflector_hosts() == ["rr1", "rr2"] and topo.calico_hosts() == ["host1", "host2"]
    assert [topo.host_ip(h) for h in topo.reflector_hosts()] == ["172.16.254.1", "172.16.254.2"]
    assert [command for _, command in topo.after_node_run()][:2] == [
        "routereflector run --ip 172.16.254.1 --ip6 fd00:172:16::254:1",
        "routereflector run --ip 172.16.254.2 --ip6 fd00:172:16::254:2"]
    assert topo.nodeInfo("rr2")["ipv6"] == [("s1", "fd00:172:16::254:2/64")]
    peers = topo.after_node_run()[-1][1]
    assert "peerIP: '172.16.254.2'" in peers and "peerIP: 'fd00:172:16::254:2'" in peers
    with pytest.raises(ValueError, match="0 to 10 route reflectors"):
        topologies.load("flat", 2, route_reflectors=11)

