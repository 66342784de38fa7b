"""Validation and the v1 document form of calicoctl's resources (no root, no etcd)."""

import ipaddress

import pytest

from calisim.datastore import keys
from calisim.datastore.resources import (BGPPeer, HostEndpoint, IPPool, Node, ValidationError, WorkloadEndpoint,
                                        kind_named, parse_as_number, parse_documents)

from calisim.testing.crud_documents import INVALID, PAIRS, UPDATES, VALID

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
    ("10.10.0.0/27", "error with field CIDR = '10.10.0.0/27' (IP pool size is too small (min /26) for use with Calico IPAM)"),
    ("fd00::/123", "error with field CIDR = 'fd00::/123' (IP pool size is too small (min /122) for use with Calico IPAM)"),
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
    with pytest.raises(ValidationError, match=r"Unknown resource type \(ipPoool\) and/or version \(v1\)"):
        parse_documents({**SEED_POOL, "kind": "ipPoool"})
    with pytest.raises(ValidationError, match=r"Unknown resource type \(ipPool\) and/or version \(v2\)"):
        parse_documents({**SEED_POOL, "apiVersion": "v2"})
    with pytest.raises(ValidationError, match="must be true or false"):
        parse_documents(pool_doc("10.0.0.0/16", **{"nat-outgoing": "yes"}))


def test_vxlan_pools_beyond_v1_round_trip_and_exclude_ipip():
    (pool,) = parse_documents(pool_doc("10.30.0.0/16", vxlan={"enabled": True}))
    assert pool.vxlan and not pool.ipip and pool.to_value()["vxlan"] == "vxlan.calico"
    assert IPPool.from_document(pool.document()) == pool == IPPool.from_value(pool.to_value())
    with pytest.raises(ValidationError, match="IPIP and VXLAN cannot both be enabled"):
        parse_documents(pool_doc("10.30.0.0/16", vxlan={"enabled": True}, ipip={"enabled": True}))
    with pytest.raises(ValidationError, match=r"error with field VXLAN.Enabled = 'true' \(VXLAN is not supported on an IPv6 IP pool\)"):
        parse_documents(pool_doc("fd00::/48", vxlan={"enabled": True}))
    with pytest.raises(ValidationError, match="unknown field in ipPool spec.vxlan: vni"):
        parse_documents(pool_doc("10.30.0.0/16", vxlan={"enabled": True, "vni": 7}))


def test_one_bad_item_rejects_the_whole_list_and_names_it():
    with pytest.raises(ValidationError, match="item 2: error with field CIDR = '10.2.0.0/28'"):
        parse_documents([pool_doc("10.1.0.0/16"), pool_doc("10.2.0.0/28")])


def test_overlapping_and_duplicate_pools_in_one_input_are_rejected():
    with pytest.raises(ValidationError, match="overlaps"):
        parse_documents([pool_doc("10.0.0.0/8"), pool_doc("10.10.0.0/16")])
    with pytest.raises(ValidationError, match="more than once"):
        parse_documents([pool_doc("10.0.0.0/8"), pool_doc("10.0.0.0/8")])


@pytest.mark.parametrize("cidrs, message", [
    (["fd00::/48", "fd00:0:0:10::/64"], "error with field CIDR = 'fd00::/48' (IP pool range overlaps with IP pool fd00:0:0:10::/64)"),
    (["fe80::/64"], "error with field CIDR = 'fe80::/64' (IP pool range overlaps with IPv6 Link Local range fe80::/10)"),
    (["169.254.0.0/20"], "error with field CIDR = '169.254.0.0/20' (IP pool range overlaps with IPv4 Link Local range "
                         "169.254.0.0/16)"),
])
def test_ipv6_pools_may_overlap_neither_each_other_nor_link_local_addresses(cidrs, message):
    with pytest.raises(ValidationError) as refused:
        parse_documents([pool_doc(cidr) for cidr in cidrs])
    assert str(refused.value).endswith(message)


def test_pools_of_different_versions_never_overlap():
    assert len(parse_documents([pool_doc("10.0.0.0/8"), pool_doc("fd00::/48"), pool_doc("fd01::/122")])) == 3


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
    assert node.row(Node.wide_columns, {"global_as": "64512"}) == ["host1", "64513", "192.168.3.229/24", ""]
    inherited = Node("host2", ipaddress.ip_interface("192.168.3.228/24"))
    assert inherited.row(["ASN"], {"global_as": "64512"}) == ["(64512)"]
    assert Node("host3").row(["NAME", "ASN"], {"global_as": "64512"}) == ["host3", ""]


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


@pytest.mark.parametrize("field, address, version", [("ipv4Address", "fd00:3::229/64", 4),
                                                      ("ipv6Address", "192.168.3.229/24", 6),
                                                      ("ipv4Address", "fd00:3::229", 4)])
def test_a_node_address_of_the_wrong_version_is_refused_in_calicos_words(field, address, version):
    shown = str(ipaddress.ip_interface(address))  # a bare address is a /32 or /128, as Calico parses it
    doc = {"apiVersion": "v1", "kind": "node", "metadata": {"name": "host1"}, "spec": {"bgp": {field: address}}}
    with pytest.raises(ValidationError) as refused:
        parse_documents(doc)
    assert str(refused.value) == (f"error with field BGP.IPv{version}Address = '{shown}' "
                                  f"(invalid IPv{version} address and subnet specified)")


@pytest.mark.parametrize("metadata", [{"scope": "global"}, {"scope": "node", "node": "host1"}])
def test_a_peer_is_stored_under_its_own_ip_version_whatever_its_scope(metadata):
    where = "/calico/bgp/v1/global/" if metadata["scope"] == "global" else "/calico/bgp/v1/host/host1/"
    for address, family in (("fd00:3::1", "peer_v6"), ("192.168.3.1", "peer_v4")):
        doc = {"apiVersion": "v1", "kind": "bgpPeer", "metadata": {**metadata, "peerIP": address},
               "spec": {"asNumber": 64512}}
        (peer,) = parse_documents(doc)
        assert peer.writes() == {f"{where}{family}/{address}": {"ip": address, "as_num": "64512"}}


def test_kind_aliases_are_case_insensitive():
    assert kind_named("IPPOOL") is IPPool and kind_named("pool") is IPPool and kind_named("ipp") is IPPool
    assert kind_named("no") is Node and kind_named("bgpp") is BGPPeer and kind_named("bp") is BGPPeer

ROUND_TRIP = [doc for _, doc in VALID] + [doc for _, *docs in PAIRS + UPDATES for doc in docs]


@pytest.mark.parametrize("name", [name for name, _ in INVALID])
def test_every_invalid_document_of_calicos_crud_test_is_rejected(name):
    (document,) = [doc for n, doc in INVALID if n == name]
    with pytest.raises(ValidationError):
        parse_documents(document)
    if isinstance(document, dict):  # and as part of a list, whichever its place
        with pytest.raises(ValidationError, match="item 2: "):
            parse_documents([VALID[0][1], document])


@pytest.mark.parametrize("index", range(len(ROUND_TRIP)))
def test_every_valid_document_of_calicos_crud_test_comes_back_as_it_went_in(index):
    document = ROUND_TRIP[index]
    (resource,) = parse_documents(document)
    assert resource.document() == document
    assert parse_documents(resource.document()) == [resource]


@pytest.mark.parametrize("ports, valid", [([65535], True), (["1:65535"], True), ([65536], False), ([0], False),
                                          (["65535:1"], False), ([-65535], False), (["0:80"], False)])
def test_port_bounds_and_ranges(ports, valid):
    rule = {"action": "deny", "protocol": "tcp", "source": {"ports": ports}}
    document = {"apiVersion": "v1", "kind": "policy", "metadata": {"name": "p"}, "spec": {"egress": [rule]}}
    if valid:
        parse_documents(document)
    else:
        with pytest.raises(ValidationError, match="is not a port"):
            parse_documents(document)


def test_kinds_in_documents_are_exact_but_on_the_command_line_any_case():
    peer = {"apiVersion": "v1", "kind": "bgppeer", "metadata": {"scope": "global", "peerIP": "10.0.0.1"},
            "spec": {"asNumber": 64513}}
    with pytest.raises(ValidationError, match=r"Unknown resource type \(bgppeer\) and/or version \(v1\)"):
        parse_documents(peer)
    assert kind_named("BGPPEER") is BGPPeer and kind_named("hep") is HostEndpoint and kind_named("heps") is HostEndpoint
    with pytest.raises(ValidationError, match="Resource type 'hosts' is not supported"):
        kind_named("hosts")


def test_host_endpoint_keys_columns_and_validation():
    document = {"apiVersion": "v1", "kind": "hostEndpoint",
                "metadata": {"name": "uplink", "node": "host2", "labels": {"role": "web"}},
                "spec": {"interfaceName": "eth0", "expectedIPs": ["192.168.3.228"], "profiles": ["web-host"]}}
    (endpoint,) = parse_documents(document)
    assert endpoint.writes() == {"/calico/v1/host/host2/endpoint/uplink": {
        "name": "eth0", "expected_ipv4_addrs": ["192.168.3.228"], "expected_ipv6_addrs": [],
        "profile_ids": ["web-host"], "labels": {"role": "web"}}}
    assert HostEndpoint.from_entries(endpoint.writes()) == [endpoint]
    assert endpoint.row(HostEndpoint.wide_columns, {}) == ["host2", "uplink", "eth0", "192.168.3.228", "web-host"]
    assert HostEndpoint.headings("ps") == ("NODE", "NAME")
    with pytest.raises(ValidationError, match="either interfaceName or expectedIPs must be specified"):
        parse_documents({**document, "spec": {"profiles": ["web-host"]}})
    with pytest.raises(ValidationError, match="not a valid IP address"):
        parse_documents({**document, "spec": {"expectedIPs": ["192.168.3.300"]}})
    with pytest.raises(ValidationError, match="missing field in hostEndpoint metadata: node"):
        parse_documents({**document, "metadata": {"name": "uplink"}})


@pytest.mark.parametrize("output, headings", [
    ("ps", ("CIDR",)), ("wide", ("CIDR", "NAT", "IPIP")), ("custom-columns=IPIP,CIDR", ("IPIP", "CIDR"))])
def test_custom_columns_take_calicoctls_headings(output, headings):
    assert IPPool.headings(output) == headings


def test_an_unknown_custom_column_names_the_valid_ones():
    with pytest.raises(ValidationError, match="Unknown heading NETWORK, valid values are: NODE, ORCHESTRATOR, WORKLOAD"):
        WorkloadEndpoint.headings("custom-columns=NAME,NETWORK")


@pytest.mark.parametrize("order, shown", [(100, "100"), (100000, "100000"), (6543215.5, "6.5432155e+06"),
                                          (0.5, "0.5"), (1e-05, "1e-05")])
def test_policy_order_is_shown_as_go_prints_a_float(order, shown):
    policy = parse_documents({"apiVersion": "v1", "kind": "policy", "metadata": {"name": "p"},
                              "spec": {"order": order, "selector": ""}})[0]
    assert policy.row(["ORDER", "SELECTOR"], {}) == [shown, ""]
