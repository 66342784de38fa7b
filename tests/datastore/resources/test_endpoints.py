"""Workload and host endpoints: the stored values, byte for byte as Calico v1's, and back."""

import ipaddress

from hypothesis import given, strategies as st

from calisim.datastore import keys
from calisim.datastore.etcd import decode, encode
from calisim.datastore.resources import HostEndpoint, WorkloadEndpoint

ENDPOINT = "a1b2c3d4e5f6" * 5 + "a1b2"
STORED = (b'{"ipv4_nets":["10.10.86.192/32"],"ipv6_nets":["fd80:24e2:f998:72d6::1/128"],"mac":"ee:ee:ee:ee:ee:ee",'
          b'"name":"calia1b2c3d4e5f","profile_ids":["net1"],"state":"active"}')


def test_a_workload_endpoint_is_stored_as_libnetwork_plugin_stores_it():
    endpoint = WorkloadEndpoint("host1", "libnetwork", "libnetwork", ENDPOINT,
                                ("10.10.86.192/32", "fd80:24e2:f998:72d6::1/128"), "calia1b2c3d4e5f",
                                "ee:ee:ee:ee:ee:ee", ("net1",))
    assert encode(endpoint.to_value()) == STORED
    assert endpoint.primary_key == f"/calico/v1/host/host1/workload/libnetwork/libnetwork/endpoint/{ENDPOINT}"
    assert WorkloadEndpoint.from_entries({endpoint.primary_key: decode(STORED)}) == [endpoint]
    assert endpoint.addresses == (ipaddress.ip_address("10.10.86.192"), ipaddress.ip_address("fd80:24e2:f998:72d6::1"))
    assert endpoint.cells({})["NETWORKS"] == "10.10.86.192/32,fd80:24e2:f998:72d6::1/128"  # IPv6 is no longer dropped


def test_endpoints_without_optional_fields_and_inactive_ones():
    endpoint = WorkloadEndpoint.from_value("host2", "o", "w", "e", {"name": "cali1", "mac": "m", "state": "inactive"})
    assert endpoint.networks == () and endpoint.profiles == () and not endpoint.active


nets4 = st.ip_addresses(v=4).map(lambda ip: f"{ip}/32")
nets6 = st.ip_addresses(v=6).map(lambda ip: f"{ip}/128")
workload_endpoints = st.builds(
    lambda node, endpoint, v4, v6, profiles, state: WorkloadEndpoint(
        node, "libnetwork", "libnetwork", endpoint, tuple(v4) + tuple(v6), f"cali{endpoint[:11]}",
        "ee:ee:ee:ee:ee:ee", tuple(profiles), state),
    st.sampled_from(["host1", "host2"]), st.text("0123456789abcdef", min_size=12, max_size=64),
    st.lists(nets4, max_size=2), st.lists(nets6, max_size=2), st.lists(st.sampled_from(["net1", "net2"]), max_size=2),
    st.sampled_from(["active", "inactive"]))


@given(st.lists(workload_endpoints, max_size=5, unique_by=lambda e: e.primary_key))
def test_workload_endpoints_round_trip_in_key_order(endpoints):
    entries = {e.primary_key: decode(encode(e.to_value())) for e in endpoints}
    entries[keys.host_bird_ip("host1")] = "192.168.3.229"
    entries[keys.host_endpoint("host1", "eth0")] = HostEndpoint("host1", "eth0", "eth0").to_value()
    assert WorkloadEndpoint.from_entries(entries) == sorted(endpoints, key=lambda e: e.primary_key)


host_endpoints = st.builds(
    lambda node, name, interface, ips, profiles, labels: HostEndpoint(
        node, name, interface, tuple(sorted(ips, key=lambda ip: ip.version)), tuple(profiles),
        tuple(sorted(labels.items()))),
    st.sampled_from(["host1", "host2"]), st.sampled_from(["eth0", "uplink"]), st.sampled_from(["", "eth0"]),
    st.lists(st.ip_addresses(), max_size=3, unique=True), st.lists(st.sampled_from(["p1", "p2"]), max_size=2),
    st.dictionaries(st.sampled_from(["role", "env"]), st.sampled_from(["web", "db"]), max_size=2))


@given(host_endpoints)
def test_host_endpoints_round_trip(endpoint):
    entries = {k: decode(encode(v)) for k, v in endpoint.writes().items()}
    assert HostEndpoint.from_entries(entries) == [endpoint]


def test_host_endpoint_values_are_felixs():
    endpoint = HostEndpoint("host2", "uplink", "eth0", (ipaddress.ip_address("10.0.0.1"),), ("prof1",),
                            (("role", "gw"),))
    assert encode(endpoint.to_value()) == (b'{"expected_ipv4_addrs":["10.0.0.1"],"expected_ipv6_addrs":[],'
                                           b'"labels":{"role":"gw"},"name":"eth0","profile_ids":["prof1"]}')
