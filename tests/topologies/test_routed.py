"""The routed topology's address plan: hosts per subnet (no root needed)."""

import pytest

import topologies


def test_hosts_per_subnet_puts_both_kinds_of_neighbour_side_by_side():
    wide = topologies.load("routed", hosts_per_subnet=2)
    assert [wide.host_ip(h) for h in wide.calico_hosts()] == ["192.168.1.10", "192.168.1.11", "192.168.2.10", "192.168.2.11"]
    seed = topologies.load("routed")
    assert [seed.host_ip(h) for h in seed.calico_hosts()] == ["192.168.1.10", "192.168.2.10"]
    with pytest.raises(ValueError, match="1 to 245 hosts per subnet, not 0"):
        topologies.load("routed", hosts_per_subnet=0)

