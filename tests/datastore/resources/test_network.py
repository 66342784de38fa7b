"""ipPool, node, bgpPeer and the BGP settings: the stored values, byte for byte as Calico v1's, and back."""

import ipaddress

from hypothesis import given, strategies as st

from calisim.datastore import keys
from calisim.datastore.etcd import decode, encode
from calisim.datastore.resources import (BGPPeer, IPPool, Node, ReflectorRegistration, as_from_value, as_value,
                                        global_as, mesh_from_value, mesh_value, node_as)
from calisim.testing import strategies

net = ipaddress.ip_network


def stored(resource) -> dict:
    """What etcd holds for the resource's keys, as bytes."""
    return {key: encode(value) for key, value in resource.writes().items()}


def test_pool_values_are_calico_v1s():
    assert stored(IPPool(net("10.10.0.0/16"), ipip=True, nat_outgoing=True)) == {"/calico/v1/ipam/v4/pool/10.10.0.0-16":
        b'{"cidr":"10.10.0.0/16","disabled":false,"ipip":"tunl0","ipip_mode":"always","masquerade":true}'}
    assert stored(IPPool(net("192.168.0.0/16"))) == {"/calico/v1/ipam/v4/pool/192.168.0.0-16":
        b'{"cidr":"192.168.0.0/16","disabled":false,"masquerade":false}'}
    assert stored(IPPool(net("fd80:24e2:f998:72d6::/64"), disabled=True)) == {
        "/calico/v1/ipam/v6/pool/fd80:24e2:f998:72d6::-64":
        b'{"cidr":"fd80:24e2:f998:72d6::/64","disabled":true,"masquerade":false}'}
    assert encode(IPPool(net("10.20.0.0/16"), ipip=True, ipip_mode="cross-subnet").to_value()) == (
        b'{"cidr":"10.20.0.0/16","disabled":false,"ipip":"tunl0","ipip_mode":"cross-subnet","masquerade":false}')
    assert encode(IPPool(net("10.30.0.0/16"), vxlan=True).to_value()) == (
        b'{"cidr":"10.30.0.0/16","disabled":false,"masquerade":false,"vxlan":"vxlan.calico"}')


def test_a_pool_stored_by_calico_v1_is_read():
    """Calico v1 wrote no ipip_mode: IPIP then tunnels always."""
    pool = IPPool.from_value(decode(b'{"cidr":"10.10.0.0/16","ipip":"tunl0","masquerade":true,"disabled":false}'))
    assert pool == IPPool(net("10.10.0.0/16"), ipip=True, nat_outgoing=True) and not pool.cross_subnet


pools = st.one_of(
    st.builds(lambda cidr, mode, nat, disabled: IPPool(cidr, True, nat, disabled, ipip_mode=mode),
              strategies.pool_cidrs(), st.sampled_from(["always", "cross-subnet"]), st.booleans(), st.booleans()),
    st.builds(lambda cidr, nat, disabled: IPPool(cidr, False, nat, disabled, vxlan=True),
              strategies.pool_cidrs(), st.booleans(), st.booleans()),
    st.builds(lambda cidr, nat, disabled: IPPool(cidr, False, nat, disabled),
              st.one_of(strategies.pool_cidrs(), strategies.pool_cidrs(strategies.POOL_SPACE_V6)),
              st.booleans(), st.booleans()))


@given(pools)
def test_pools_round_trip_through_their_stored_bytes(pool):
    assert IPPool.from_value(decode(encode(pool.to_value()))) == pool
    assert IPPool.from_entries({k: decode(encode(v)) for k, v in pool.writes().items()}) == [pool]
    assert IPPool.from_entries(pool.writes(), 10 - pool.cidr.version) == []  # asked for the other version


def test_pools_are_found_among_other_keys_in_key_order():
    a, b, c = IPPool(net("10.2.0.0/16")), IPPool(net("10.1.0.0/16")), IPPool(net("fd00::/64"))
    entries = {**a.writes(), **c.writes(), **b.writes(), keys.GLOBAL_AS: "64512"}
    assert IPPool.from_entries(entries) == [b, a, c]
    assert IPPool.from_entries(entries, 6) == [c]


interfaces4 = st.builds(lambda a, p: ipaddress.ip_interface(f"{ipaddress.IPv4Address(a)}/{p}"),
                        st.integers(1, 2 ** 32 - 2), st.integers(8, 32))
interfaces6 = st.builds(lambda a, p: ipaddress.ip_interface(f"{ipaddress.IPv6Address(a)}/{p}"),
                        st.integers(1, 2 ** 128 - 2), st.integers(48, 128))
nodes = st.builds(Node, st.sampled_from(["host1", "host2", "node-a.example"]), st.none() | interfaces4,
                  st.none() | interfaces6, st.none() | st.integers(1, 4294967295))


@given(nodes)
def test_nodes_round_trip_through_their_stored_keys(node):
    entries = {key: decode(encode(value)) for key, value in node.writes().items()}
    other = Node("other", ipaddress.ip_interface("10.0.0.1/8"))
    assert Node.from_entries({**entries, **other.writes(), keys.GLOBAL_AS: "64512"}) == sorted(
        [node, other], key=lambda n: n.node_name)


def test_node_keys_are_calico_v1s():
    node = Node("host1", ipaddress.ip_interface("192.168.3.229/24"), ipaddress.ip_interface("fd00:3::229/64"), 64513)
    assert stored(node) == {
        "/calico/v1/host/host1/metadata": b"{}",
        "/calico/v1/host/host1/bird_ip": b'"192.168.3.229"',
        "/calico/bgp/v1/host/host1/ip_addr_v4": b'"192.168.3.229"',
        "/calico/bgp/v1/host/host1/network_v4": b'"192.168.3.0/24"',
        "/calico/bgp/v1/host/host1/ip_addr_v6": b'"fd00:3::229"',
        "/calico/bgp/v1/host/host1/network_v6": b'"fd00:3::/64"',
        "/calico/bgp/v1/host/host1/as_num": b'"64513"'}


peers = st.builds(BGPPeer, st.just("global"), st.ip_addresses(), st.integers(1, 4294967295)) | st.builds(
    BGPPeer, st.just("node"), st.ip_addresses(), st.integers(1, 4294967295), st.sampled_from(["host1", "host2"]))


@given(st.lists(peers, max_size=6, unique_by=lambda p: p.primary_key))
def test_peers_round_trip_global_ones_first(found):
    entries = {key: decode(encode(value)) for peer in found for key, value in peer.writes().items()}
    expected = sorted(found, key=lambda p: (p.scope == "node", p.primary_key))
    assert BGPPeer.from_entries(entries) == expected
    assert BGPPeer.from_entries(entries, keys.GLOBAL_PEERS_V4) == [
        p for p in expected if p.scope == "global" and p.peer_ip.version == 4]


def test_peer_values_are_calico_v1s():
    peer = BGPPeer("node", ipaddress.ip_address("192.168.3.1"), 64513, "host1")
    assert stored(peer) == {"/calico/bgp/v1/host/host1/peer_v4/192.168.3.1": b'{"as_num":"64513","ip":"192.168.3.1"}'}
    assert BGPPeer.from_value(decode(b'{"as_num":"64513","ip":"192.168.3.1"}'), "host1") == peer


def test_bgp_settings():
    assert global_as({}) == keys.DEFAULT_AS == global_as({keys.GLOBAL_AS: ""})
    assert global_as({keys.GLOBAL_AS: as_value(65000)}) == 65000
    entries = {keys.bgp_host_as("host1"): as_value(64600)}
    assert node_as(entries, "host1", 64512) == 64600 and node_as(entries, "host2", 64512) == 64512
    assert as_from_value(None) is None and as_value(4294967295) == "4294967295"
    assert mesh_from_value(None) and mesh_from_value(mesh_value(True)) and not mesh_from_value(mesh_value(False))
    assert encode(mesh_value(True)) == b'{"enabled":true}'


def test_reflector_registrations():
    registration = ReflectorRegistration("172.16.254.1", "255.0.0.1")
    assert (registration.key, encode(registration.to_value())) == (
        "/calico/bgp/v1/rr_v4/172.16.254.1", b'{"cluster_id":"255.0.0.1","ip":"172.16.254.1"}')
    other = ReflectorRegistration("172.16.254.2", "255.0.0.1")
    entries = {other.key: other.to_value(), registration.key: registration.to_value(), keys.GLOBAL_AS: "64512"}
    assert ReflectorRegistration.from_entries(entries) == [registration, other]
    ipv6 = ReflectorRegistration("fd00:172:16::254:1", "255.0.0.1")
    assert ipv6.key == "/calico/bgp/v1/rr_v6/fd00:172:16::254:1"
    entries[ipv6.key] = ipv6.to_value()
    assert ReflectorRegistration.from_entries(entries) == [registration, other]
    assert ReflectorRegistration.from_entries(entries, 6) == [ipv6]
