"""What a topology is, described without building it (no root needed)."""

from types import SimpleNamespace

import topologies
from calisim.emulation import state


def test_topologies_are_described_without_building_them():
    routed = topologies.load("routed")
    hosts = {h["name"]: h for h in state.describe_hosts(routed)}
    r1 = hosts["r1"]
    assert {key: r1[key] for key in ("name", "role", "joins")} == {"name": "r1", "role": "router",
                                                                   "joins": ["s1", "s2", "s3"]}
    # IPv4 first, then IPv6 (the routed topology's IPv6 may grow: only these are certain)
    assert r1["addresses"][:3] == ["192.168.1.1/24", "192.168.2.1/24", "198.51.100.1/24"]
    assert {"fd00:192:168:1::1/64", "fd00:192:168:2::1/64"} <= set(r1["addresses"][3:])
    assert all(":" in address for address in r1["addresses"][3:])
    assert hosts["host2"]["addresses"] == ["192.168.2.10/24", "fd00:192:168:2::10/64"]
    assert hosts["host1"]["role"] == "calico host, etcd" and hosts["ext1"]["role"] == "outside host"
    assert state.segments(routed) == [{"name": "s1", "joins": ["host1", "r1"]}, {"name": "s2", "joins": ["host2", "r1"]},
                                      {"name": "s3", "joins": ["ext1", "r1"]}]



def test_inspect_lists_ipv4_then_ipv6_addresses_without_link_local_ones():
    addr_info = [{"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"},
                 {"family": "inet6", "local": "fd00:3::229", "prefixlen": 64, "scope": "global"},
                 {"family": "inet", "local": "192.168.3.229", "prefixlen": 24, "scope": "global"}]
    assert state.listed_addresses(addr_info) == ["192.168.3.229/24", "fd00:3::229/64"]
    listed = {"NetworkSettings": {"Networks": {
        "net2": {"IPAddress": "10.10.0.9", "GlobalIPv6Address": ""},
        "net1": {"IPAddress": "10.10.0.1", "GlobalIPv6Address": "fd80:24e2:f998:72d6::1"}}}}
    assert state.container_addresses(listed) == ["10.10.0.1", "10.10.0.9", "fd80:24e2:f998:72d6::1"]
    assert state.container_addresses({"NetworkSettings": None}) == []


def test_a_cluster_on_servers_says_where_each_node_runs_and_one_machine_says_nothing():
    topo = topologies.load("two_host")
    spread = SimpleNamespace(topo=topo, servers="sim:2", server_of={"host1": "server1", "host2": "server2"}.get)
    assert state.placement_of(spread) == {"host1": "server1", "host2": "server2"}
    assert state.placement_of(SimpleNamespace(topo=topo, servers=None)) is None
    assert [h["server"] for h in state.describe_hosts(topo, state.placement_of(spread))] == ["server1", "server2"]
