"""What a topology is, described without building it (no root needed)."""

import topologies
from calisim.emulation import state


def test_topologies_are_described_without_building_them():
    routed = topologies.load("routed")
    hosts = {h["name"]: h for h in state.describe_hosts(routed)}
    assert hosts["r1"] == {"name": "r1", "role": "router", "joins": ["s1", "s2", "s3"],
                           "addresses": ["192.168.1.1/24", "192.168.2.1/24", "198.51.100.1/24"]}
    assert hosts["host1"]["role"] == "calico host, etcd" and hosts["ext1"]["role"] == "outside host"
    assert state.segments(routed) == [{"name": "s1", "joins": ["host1", "r1"]}, {"name": "s2", "joins": ["host2", "r1"]},
                                      {"name": "s3", "joins": ["ext1", "r1"]}]

