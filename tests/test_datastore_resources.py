"""Validation and the v1 document form of calicoctl's resources (no root, no etcd)."""

import ipaddress

import pytest

from calisim.datastore import keys
from calisim.datastore.resources import (BGPPeer, IPPool, Node, ValidationError, kind_named, parse_as_number,
                               parse_documents)

SEED_POOL = {"apiVersion": "v1", "kind": "ipPool", "metadata": {"cidr": "10.10.0.0/16"},
             "spec": {"ipip": {"enabled": True}, "nat-outgoing": True}}


def pool_doc(cidr, **spec):
    return {"apiVersion": "v1", "kind": "ipPool", "metadata": {"cidr": cidr}, "spec": spec}


def test_seed_pool_is_parsed_and_stored_with_calico_v1_keys():
    (pool,) = parse_documents([SEED_POOL])
    assert pool == IPPool(ipaddress.ip_network("10.10.0.0/16"), ipip=True, nat_outgoing=True)
    assert pool.writes() == {"/calico/v1/ipam/v4/pool/10.10.0.0-16": {
        "cidr": "10.10.0.0/16", "ipip": "tunl0", "ipip_mode": "always", "masquerade": True, "disabled": False}}
    assert IPPool.from_document(pool.document()) == pool


@pytest.mark.parametrize("cidr, message", [
    ("10.10.0.0/27", "IP pool is too small"),
    ("10.10.0.1/16", "host bits set (did you mean 10.10.0.0/16?)"),
    ("10.10.0.0", "no prefix length"),
    ("10.300.0.0/16", "not a valid CIDR"),
    ("banana", "not a valid CIDR"),
])
def test_bad_pool_cidrs_are_rejected_with_a_clear_message(cidr, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        parse_documents(pool_doc(cidr))


def test_unknown_fields_and_wrong_kinds_are_rejected():
    with pytest.raises(ValidationError, match="unknown field in ipPool spec: nat_outgoing"):
        parse_documents(pool_doc("10.0.0.0/16", nat_outgoing=True))
    with pytest.raises(ValidationError, match="unknown field in ipPool resource: extra"):
        parse_documents({**SEED_POOL, "extra": 1})
    with pytest.raises(ValidationError, match="resource type 'ipPoool' is not supported"):
        parse_documents({**SEED_POOL, "kind": "ipPoool"})
    with pytest.raises(ValidationError, match="apiVersion must be v1"):
        parse_documents({**SEED_POOL, "apiVersion": "v2"})
    with pytest.raises(ValidationError, match="must be true or false"):
        parse_documents(pool_doc("10.0.0.0/16", **{"nat-outgoing": "yes"}))


def test_vxlan_pools_beyond_v1_round_trip_and_exclude_ipip():
    (pool,) = parse_documents(pool_doc("10.30.0.0/16", vxlan={"enabled": True}))
    assert pool.vxlan and not pool.ipip and pool.value()["vxlan"] == "vxlan.calico"
    assert IPPool.from_document(pool.document()) == pool == IPPool.from_value(pool.value())
    with pytest.raises(ValidationError, match="IPIP and VXLAN cannot both be enabled"):
        parse_documents(pool_doc("10.30.0.0/16", vxlan={"enabled": True}, ipip={"enabled": True}))
    with pytest.raises(ValidationError, match="VXLAN is only supported on IPv4 pools"):
        parse_documents(pool_doc("fd00::/48", vxlan={"enabled": True}))
    with pytest.raises(ValidationError, match="unknown field in ipPool spec.vxlan: vni"):
        parse_documents(pool_doc("10.30.0.0/16", vxlan={"enabled": True, "vni": 7}))


def test_one_bad_item_rejects_the_whole_list_and_names_it():
    with pytest.raises(ValidationError, match="item 2: IP pool is too small"):
        parse_documents([pool_doc("10.1.0.0/16"), pool_doc("10.2.0.0/28")])


def test_overlapping_and_duplicate_pools_in_one_input_are_rejected():
    with pytest.raises(ValidationError, match="overlaps"):
        parse_documents([pool_doc("10.0.0.0/8"), pool_doc("10.10.0.0/16")])
    with pytest.raises(ValidationError, match="more than once"):
        parse_documents([pool_doc("10.0.0.0/8"), pool_doc("10.0.0.0/8")])


@pytest.mark.parametrize("text, number", [("64512", 64512), (64513, 64513), ("4294.566", 4294 * 65536 + 566),
                                          ("4294967295", 4294967295)])
def test_as_numbers_plain_and_asdot(text, number):
    assert parse_as_number(text) == number


@pytest.mark.parametrize("text", ["0", "4294967296", "65536.1", "-1", "12a", True])
def test_as_numbers_out_of_range_or_malformed_are_rejected(text):
    with pytest.raises(ValidationError):
        parse_as_number(text)


def test_node_round_trip_and_keys():
    doc = {"apiVersion": "v1", "kind": "node", "metadata": {"name": "host1"},
           "spec": {"bgp": {"asNumber": 64513, "ipv4Address": "192.168.3.229/24"}}}
    (node,) = parse_documents(doc)
    assert node.document() == doc
    assert node.writes() == {
        keys.host_metadata("host1"): {}, keys.host_bird_ip("host1"): "192.168.3.229",
        keys.bgp_host_ip_v4("host1"): "192.168.3.229", keys.bgp_host_network_v4("host1"): "192.168.3.0/24",
        keys.bgp_host_as("host1"): "64513"}
    assert node.row(True, {"global_as": "64512"}) == ["host1", "64513", "192.168.3.229/24", ""]
    inherited = Node("host2", ipaddress.ip_interface("192.168.3.228/24"))
    assert inherited.row(True, {"global_as": "64512"})[1] == "(64512)"


def test_bgp_peer_scopes():
    node_peer = {"apiVersion": "v1", "kind": "bgpPeer",
                 "metadata": {"scope": "node", "node": "host1", "peerIP": "192.168.3.1"}, "spec": {"asNumber": 64567}}
    (peer,) = parse_documents(node_peer)
    assert peer.primary_key == "/calico/bgp/v1/host/host1/peer_v4/192.168.3.1"
    assert BGPPeer.from_document(peer.document()) == peer
    with pytest.raises(ValidationError, match="node is required"):
        parse_documents({**node_peer, "metadata": {"scope": "node", "peerIP": "192.168.3.1"}})
    with pytest.raises(ValidationError, match="not a valid IP address"):
        parse_documents({**node_peer, "metadata": {"scope": "global", "peerIP": "192.168.3"}})


def test_kind_aliases_are_case_insensitive():
    assert kind_named("IPPOOL") is IPPool and kind_named("pool") is IPPool and kind_named("ipp") is IPPool
    assert kind_named("no") is Node and kind_named("bgpp") is BGPPeer and kind_named("bp") is BGPPeer
