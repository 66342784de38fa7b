"""What a topology is, described without building it (no root needed)."""

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
