"""Bad BGP input through calicoctl against a real etcd: bgpPeers with a bad IP or AS,
a cross-subnet mode on a non-IPIP pool: clear errors, nothing stored.  And asdot AS
numbers accepted everywhere, printed back as plain decimal (bgp-and-ipv6.md section 5)."""

import pytest
import yaml

from calisim.datastore import keys

from .conftest import dump
from .test_calicoctl import ctl  # noqa: F401  (the fixture)

pytestmark = pytest.mark.emulation

NODE = "- apiVersion: v1\n  kind: node\n  metadata: {name: host1}\n  spec: {bgp: {ipv4Address: 172.16.0.1/16}}\n"


def peer(metadata: str, asn: str = "64512") -> str:
    return f"- apiVersion: v1\n  kind: bgpPeer\n  metadata: {{{metadata}}}\n  spec: {{asNumber: {asn}}}\n"


BAD = {
    "bad peer IP": (peer("scope: global, peerIP: 172.16.0.300"), "bgpPeer metadata.peerIP"),
    "bad peer AS": (peer("scope: global, peerIP: 172.16.0.9", "abcde"), "is not a valid AS number"),
    "peer AS out of range": (peer("scope: global, peerIP: 172.16.0.9", "4294967296"), "out of range"),
    "bad asdot": (peer("scope: global, peerIP: 172.16.0.9", '"65536.1"'), "not a valid asdot AS number"),
    "cross-subnet without IPIP": ("- apiVersion: v1\n  kind: ipPool\n  metadata: {cidr: 10.10.0.0/16}\n"
                                  "  spec: {ipip: {enabled: false, mode: cross-subnet}}\n",
                                  "error with field IPIP.Mode = 'cross-subnet' (the mode needs IPIP enabled"),
    "unknown IPIP mode": ("- apiVersion: v1\n  kind: ipPool\n  metadata: {cidr: 10.10.0.0/16}\n"
                          "  spec: {ipip: {enabled: true, mode: sometimes}}\n",
                          "error with field IPIP.Mode = 'sometimes' (must be one of: always, cross-subnet)"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_bgp_input_stores_nothing(ctl, ds, name):  # noqa: F811
    assert ctl("create", "-f", "-", stdin=NODE)[0] == 0
    before = dump(ds)
    text, message = BAD[name]
    for action in ("create", "apply"):
        code, output = ctl(action, "-f", "-", stdin=text)
        assert code == 1 and message in output, (action, output)
        assert dump(ds) == before


def test_a_node_peer_of_a_node_created_in_the_same_batch_is_fine(ctl, ds):  # noqa: F811
    code, output = ctl("create", "-f", "-", stdin=NODE + peer("scope: node, node: host1, peerIP: 172.16.0.9", '"0.65001"'))
    assert code == 0, output
    assert ds.get(keys.bgp_host_peers_v4("host1") + "172.16.0.9").value == {"ip": "172.16.0.9", "as_num": "65001"}


def test_asdot_in_plain_decimal_out(ctl, ds):  # noqa: F811
    text = (NODE.replace("{ipv4Address", '{asNumber: "4294.566", ipv4Address')
            + peer("scope: global, peerIP: 172.16.0.9", '"4294.566"'))
    assert ctl("create", "-f", "-", stdin=text)[0] == 0
    assert ctl("config", "set", "asNumber", "1.10") == (0, "")
    assert ctl("config", "get", "asNumber") == (0, "65546\n")
    assert ds.get(keys.bgp_host_as("host1")).value == "281412150"
    assert ds.get(keys.GLOBAL_PEERS_V4 + "172.16.0.9").value["as_num"] == "281412150"
    assert "281412150" in ctl("get", "bgpPeer")[1]
    assert yaml.safe_load(ctl("get", "node", "host1", "-o", "yaml")[1])[0]["spec"]["bgp"]["asNumber"] == 281412150
    assert ctl("get", "node", "-o", "wide")[1].splitlines()[1].split()[:2] == ["host1", "281412150"]
    code, output = ctl("config", "set", "asNumber", "abcde")
    assert code == 1


def test_cross_subnet_round_trips(ctl, ds):  # noqa: F811
    pool = ("- apiVersion: v1\n  kind: ipPool\n  metadata: {cidr: 10.10.0.0/16}\n"
            "  spec: {ipip: {enabled: true, mode: cross-subnet}}\n")
    assert ctl("create", "-f", "-", stdin=pool)[0] == 0
    assert ds.get(keys.POOLS_V4 + "10.10.0.0-16").value["ipip_mode"] == "cross-subnet"
    spec = yaml.safe_load(ctl("get", "ipPool", "10.10.0.0/16", "-o", "yaml")[1])[0]["spec"]
    assert spec["ipip"] == {"enabled": True, "mode": "cross-subnet"}
