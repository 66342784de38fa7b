"""IPIP cross-subnet (`spec.ipip.mode: cross-subnet`): on `routed --hosts-per-subnet 2` only the
traffic crossing the router is encapsulated (protocol 4 seen there and nowhere else)."""

from importlib import resources

import pytest

import topologies
from calisim.emulation import Cluster

from .conftest import replay

pytestmark = pytest.mark.emulation


def test_cross_subnet_encapsulates_only_across_the_router(untouched, runs):
    text = resources.files("calisim.scenarios").joinpath("transcripts/cross_subnet.txt").read_text()
    with Cluster(topologies.load("routed", hosts_per_subnet=2)) as cluster:
        assert [cluster.topo.host_ip(h) for h in cluster.hosts] == ["192.168.1.10", "192.168.1.11",
                                                                    "192.168.2.10", "192.168.2.11"]
        results = replay(cluster, text)
    assert all(r.passed for r in results)
