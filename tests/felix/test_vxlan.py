"""The VXLAN dataplane computed from etcd's keys (no root needed): who gets neighbours, forwarding
entries and routes."""

from calisim.datastore import keys
from calisim.felix import vxlan
from calisim.datastore.keys import BLOCKS


def host(name, ip, tunnel=None, mac=None):
    entries = {keys.host_bird_ip(name): ip}
    if tunnel:
        entries[keys.host_config(name, vxlan.ADDRESS_PARAM)] = tunnel
    if mac:
        entries[keys.host_config(name, vxlan.MAC_PARAM)] = mac
    return entries


def block(cidr, owner):
    return {BLOCKS + keys.cidr_to_key(cidr): {"affinity": f"host:{owner}", "allocations": [None] * 64}}


POOLS = {keys.POOLS_V4 + "10.30.0.0-16": {"cidr": "10.30.0.0/16", "vxlan": "vxlan.calico"},
         keys.POOLS_V4 + "10.10.0.0-16": {"cidr": "10.10.0.0/16", "ipip": "tunl0"}}


def test_no_vxlan_pool_means_no_device():
    entries = {keys.POOLS_V4 + "10.10.0.0-16": {"cidr": "10.10.0.0/16", "ipip": "tunl0"}, **host("a", "192.168.1.10")}
    assert vxlan.desired(entries, "a") is None


def test_peers_need_address_and_mac_and_only_vxlan_blocks_are_routed():
    entries = {**POOLS,
               **host("a", "192.168.1.10", "10.30.1.0", "02:00:00:00:00:0a"),
               **host("b", "192.168.2.10", "10.30.2.0", "02:00:00:00:00:0b"),
               **host("c", "192.168.3.10", "10.30.3.0"),  # no MAC published yet: not a peer
               **block("10.30.1.0/26", "a"), **block("10.30.2.0/26", "b"), **block("10.30.2.64/26", "b"),
               **block("10.30.3.0/26", "c"), **block("10.10.5.0/26", "b")}
    state = vxlan.desired(entries, "a")
    assert state.tunnel_ip == "10.30.1.0"
    assert state.peers == (vxlan.Peer("b", "192.168.2.10", "10.30.2.0", "02:00:00:00:00:0b"),)
    assert state.routes == (("10.30.2.0/26", "10.30.2.0"), ("10.30.2.64/26", "10.30.2.0"))
