"""Felix's desired state for workload endpoints, computed from etcd keys (no root)."""

import ipaddress

from calisim import felix

PREFIX = "/calico/v1/host/host1/workload/libnetwork/libnetwork/endpoint/"


def endpoint(name, *nets, state="active"):
    return {"state": state, "name": name, "mac": "ee:ee:ee:ee:ee:ee", "profile_ids": ["net1"],
            "ipv4_nets": list(nets), "ipv6_nets": []}


def test_only_this_hosts_active_endpoints_are_programmed():
    entries = {
        PREFIX + "a": endpoint("calia", "10.10.0.1/32"),
        PREFIX + "b": endpoint("calib", "10.10.0.2/32", "10.10.0.3/32"),
        PREFIX + "c": endpoint("calic", "10.10.0.4/32", state="inactive"),
        "/calico/v1/host/host2/workload/libnetwork/libnetwork/endpoint/d": endpoint("calid", "10.10.1.1/32"),
        "/calico/v1/host/host1/metadata": {},
    }
    wanted = felix.desired_interfaces(entries, "host1")
    assert sorted(wanted) == ["calia", "calib"]
    assert wanted["calib"] == felix.WorkloadInterface(
        "calib", "ee:ee:ee:ee:ee:ee", (ipaddress.ip_address("10.10.0.2"), ipaddress.ip_address("10.10.0.3")))


def test_proxy_arp_and_friends_are_set_per_interface():
    assert {pattern.format("calia"): value for pattern, value in felix.INTERFACE_SYSCTLS.items()} == {
        "ipv4/conf/calia/proxy_arp": "1", "ipv4/conf/calia/rp_filter": "1",
        "ipv4/conf/calia/route_localnet": "1", "ipv4/neigh/calia/proxy_delay": "0"}
