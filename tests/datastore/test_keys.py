"""Calico v1's key layout and Docker's cluster-store keys."""

import ipaddress

from calisim.datastore import keys


def test_calico_v1_paths():
    net = ipaddress.ip_network
    assert keys.pool(net("10.10.0.0/16")) == "/calico/v1/ipam/v4/pool/10.10.0.0-16"
    assert keys.pool(net("fd80:24e2:f998:72d6::/64")) == "/calico/v1/ipam/v6/pool/fd80:24e2:f998:72d6::-64"
    assert keys.workload_endpoint("host1", "libnetwork", "libnetwork", "abc") == (
        "/calico/v1/host/host1/workload/libnetwork/libnetwork/endpoint/abc")
    assert keys.workload_endpoint("h", "o", "w", "e").startswith(keys.workloads("h"))
    assert keys.PROFILES == "/calico/v1/policy/profile/"
    assert keys.POLICIES == "/calico/v1/policy/tier/default/policy/"
    assert keys.block(net("10.10.0.64/26")) == "/calico/ipam/v2/assignment/ipv4/block/10.10.0.64-26"
    assert keys.block(net("fd00::/122")) == "/calico/ipam/v2/assignment/ipv6/block/fd00::-122"
    assert keys.affinity("host1", net("10.10.0.64/26")) == "/calico/ipam/v2/host/host1/ipv4/block/10.10.0.64-26"
    assert keys.handle("wl1") == "/calico/ipam/v2/handle/wl1"
    assert keys.ipam_host("host1") == "/calico/ipam/v2/host/host1/"
    assert keys.route_reflector("172.16.254.1") == "/calico/bgp/v1/rr_v4/172.16.254.1"
    assert keys.route_reflector("fd00:172:16::254:1") == "/calico/bgp/v1/rr_v6/fd00:172:16::254:1"


def test_docker_cluster_store_paths():
    assert keys.docker_network("n1") == "/docker/network/v1.0/network/n1"
    assert keys.docker_endpoints("n1") == "/docker/network/v1.0/endpoint/n1/"
    assert keys.DOCKER_NETWORKS.startswith(keys.DOCKER_STORE) and keys.DOCKER_ENDPOINTS.startswith(keys.DOCKER_STORE)


def test_cidr_keys_round_trip():
    for cidr in ("10.0.0.0/8", "192.168.3.0/24", "fd00:3::/64"):
        assert keys.key_to_cidr(keys.cidr_to_key(cidr)) == cidr
