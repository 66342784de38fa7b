"""calicoctl's resource commands against a real etcd: messages, output formats, and bad input that
stores nothing; bad BGP and IPv6 input (bgpPeers with a bad IP or AS, a cross-subnet mode on a non-IPIP
pool, IPv6 pools too small, link-local or overlapping, node addresses of the wrong version): Calico's
errors, nothing stored; IPv6 peers of either scope stored apart from the IPv4 ones; asdot AS numbers accepted everywhere, printed back as plain
decimal."""

import json

import pytest
import yaml

from calisim.datastore import keys
from calisim.testing.crud_documents import INVALID, PAIRS, UPDATES, VALID

from tests.calicoctl.conftest import SEED_POOL
from tests.conftest import dump

pytestmark = pytest.mark.emulation


def test_seed_pool_create_get_and_duplicate(ctl):
    assert ctl("create", "-f", "-", stdin=SEED_POOL) == (0, "Successfully created 1 'ipPool' resource(s)\n")
    assert ctl("get", "ipPool", "-o", "wide") == (0, "CIDR           NAT    IPIP   \n10.10.0.0/16   true   true   \n")
    assert ctl("create", "-f", "-", stdin=SEED_POOL) == (
        1, "Failed to create 'ipPool' resource: resource already exists: IPPool(cidr=10.10.0.0/16)\n")
    assert ctl("create", "--skip-exists", "-f", "-", stdin=SEED_POOL) == (  # skipped ones count, as calicoctl's
        0, "Successfully created 1 'ipPool' resource(s)\n")


BAD_INPUTS = {
    "malformed yaml": ("- apiVersion: v1\n  kind: [ipPool\n", "error parsing"),
    "pool too small": (SEED_POOL.replace("10.10.0.0/16", "10.10.0.0/27"), "(IP pool size is too small (min /26) for use with Calico IPAM)"),
    "unknown field": (SEED_POOL.replace("nat-outgoing", "natOutgoing"), "unknown field in ipPool spec: natOutgoing"),
    "wrong kind": (SEED_POOL.replace("ipPool", "ipPoolz"), "Unknown resource type (ipPoolz) and/or version (v1)"),
    "bad second item": (SEED_POOL + SEED_POOL.replace("10.10.0.0/16", "10.20.0.0/33"), "item 2: "),
    "overlaps a stored pool": (SEED_POOL.replace("10.10.0.0/16", "10.0.0.0/8"), "overlaps with IP pool 10.10.0.0/16"),
    "node AS out of range": ("kind: node\napiVersion: v1\nmetadata: {name: n1}\nspec: {bgp: {asNumber: 4294967296}}\n",
                             "out of range"),
    "IPIP on an IPv6 pool": (SEED_POOL.replace("10.10.0.0/16", "fd00:10::/64"),
                             "error with field IPIP.Enabled = 'true' (IPIP is not supported on an IPv6 IP pool)"),
    "VXLAN on an IPv6 pool": (SEED_POOL.replace("10.10.0.0/16", "fd00:10::/64").replace("ipip:", "vxlan:"),
                              "error with field VXLAN.Enabled = 'true' (VXLAN is not supported on an IPv6 IP pool)"),
    "IPv6 pool smaller than a block": (SEED_POOL.replace("10.10.0.0/16", "fd00:10::/123").replace("true", "false"),
                                       "error with field CIDR = 'fd00:10::/123' (IP pool size is too small (min /122) "
                                       "for use with Calico IPAM)"),
    "empty input": ("", "contains no resources"),
    "not a resource": ("- 42\n", "must be a mapping"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_is_rejected_whole_and_stores_nothing(ctl, ds, name):
    assert ctl("create", "-f", "-", stdin=SEED_POOL)[0] == 0
    before = dump(ds)
    text, message = BAD_INPUTS[name]
    for action in ("create", "apply", "replace"):
        code, output = ctl(action, "-f", "-", stdin=text)
        assert code == 1 and message in output, (action, output)
        assert dump(ds) == before


def test_yaml_and_json_output_round_trip_through_apply_and_delete(ctl, ds):
    ctl("create", "-f", "-", stdin=SEED_POOL + """\
- apiVersion: v1
  kind: bgpPeer
  metadata: {scope: global, peerIP: 192.168.3.1}
  spec: {asNumber: 64513}
- apiVersion: v1
  kind: node
  metadata: {name: host1}
  spec: {bgp: {asNumber: 64512, ipv4Address: 192.168.3.229/24}}
""")
    stored = dump(ds)
    documents = []
    for kind in ("ipPool", "bgpPeer", "node"):
        code, text = ctl("get", kind, "-o", "yaml")
        assert code == 0
        documents += yaml.safe_load(text)
        code, text = ctl("get", kind, "-o", "json")
        assert json.loads(text) == yaml.safe_load(ctl("get", kind, "-o", "yaml")[1])
    assert ctl("apply", "-f", "-", stdin=yaml.safe_dump(documents))[1] == "Successfully applied 3 resource(s)\n"
    assert dump(ds) == stored
    assert ctl("delete", "-f", "-", stdin=json.dumps(documents)) == (0, "Successfully deleted 3 resource(s)\n")
    assert ctl("get", "ipPool", "-o", "yaml") == (0, "[]\n")
    assert not any(key.startswith(("/calico/v1/ipam/v4/pool", "/calico/bgp/v1/global/peer_v4", "/calico/v1/host"))
                   for key in dump(ds))


def test_replace_needs_an_existing_resource_and_apply_does_not(ctl, ds):
    code, output = ctl("replace", "-f", "-", stdin=SEED_POOL)
    assert code == 1 and "resource does not exist: IPPool(cidr=10.10.0.0/16)" in output
    assert ctl("apply", "-f", "-", stdin=SEED_POOL)[0] == 0
    assert ctl("replace", "-f", "-", stdin=SEED_POOL.replace("nat-outgoing: true", "nat-outgoing: false")) == (
        0, "Successfully replaced 1 'ipPool' resource(s)\n")
    assert ds.get("/calico/v1/ipam/v4/pool/10.10.0.0-16").value["masquerade"] is False


def test_delete_by_name(ctl):
    ctl("create", "-f", "-", stdin=SEED_POOL)
    assert ctl("delete", "ipPool", "192.168.0.0/16") == (
        1, "Failed to delete 'ipPool' resource: resource does not exist: IPPool(cidr=192.168.0.0/16)\n")
    assert ctl("delete", "ipPool", "192.168.0.0/16", "--skip-not-exists")[0] == 0
    assert ctl("delete", "pool", "10.10.0.0/16") == (0, "Successfully deleted 1 'ipPool' resource(s)\n")
    assert ctl("get", "ipPool") == (0, "CIDR   \n")
    code, output = ctl("delete", "ipPool", "10.10.0.0")
    assert code == 1 and "no prefix length" in output


def test_unreachable_etcd_is_reported(ctl, monkeypatch, tmp_path):
    monkeypatch.setenv("ETCD_ENDPOINTS", f"unix://{tmp_path}/nothing.sock:2379")
    code, output = ctl("get", "ipPool")
    assert code == 1 and "nothing.sock" in output


def test_deleting_a_pool_through_calicoctl_releases_affinities(ctl, ds):
    from calisim.datastore.keys import BLOCKS
    from calisim.ipam import IPAM

    ctl("create", "-f", "-", stdin=SEED_POOL)
    ipam = ds.wrap(IPAM(ds.target))
    (kept,) = ipam.auto_assign("host1", 1)
    assert ctl("delete", "ipPool", "10.10.0.0/16") == (0, "Successfully deleted 1 'ipPool' resource(s)\n")
    assert [e.value["affinity"] for e in ds.list(BLOCKS)] == [None]
    assert ds.list("/calico/ipam/v2/host/") == []
    assert ctl("ipam", "show", "--ip", str(kept)) == (0, f"No attributes defined for IP {kept}\n")


def test_get_from_a_file_of_several_kinds_prints_a_table_per_kind(ctl):
    peer = "- apiVersion: v1\n  kind: bgpPeer\n  metadata: {scope: global, peerIP: 192.168.3.1}\n  spec: {asNumber: 64513}\n"
    ctl("create", "-f", "-", stdin=SEED_POOL + peer)
    assert ctl("get", "-f", "-", stdin=SEED_POOL + peer) == (0, (
        "CIDR           \n10.10.0.0/16   \n\n"
        "SCOPE    PEERIP        NODE   ASN     \nglobal   192.168.3.1          64513   \n"))


def stored(ctl, kind: str) -> list:
    """What `get KIND -o yaml` and `-o json` both show (they must agree)."""
    code, text = ctl("get", kind, "-o", "yaml")
    assert code == 0, text
    documents = yaml.safe_load(text)
    assert json.loads(ctl("get", kind, "-o", "json")[1]) == documents
    return documents


def same(documents: list, expected: list) -> bool:
    return (sorted(json.dumps(d, sort_keys=True) for d in documents)
            == sorted(json.dumps(d, sort_keys=True) for d in expected))


@pytest.mark.parametrize("name", [name for name, _ in INVALID])
def test_every_invalid_document_of_calicos_crud_test_stores_nothing(ctl, ds, tmp_path, name):
    (document,) = [doc for n, doc in INVALID if n == name]
    (tmp_path / "testfile.yaml").write_text(yaml.safe_dump(document))
    before = dump(ds)
    code, output = ctl("create", "-f", "testfile.yaml")
    assert code == 1 and output.startswith("Failed to execute command: "), output
    assert dump(ds) == before
    for item in document if isinstance(document, list) else [document]:
        assert stored(ctl, item["kind"]) == []


def test_a_list_with_one_invalid_item_stores_none_of_it(ctl, ds, tmp_path):
    valid = [doc for _, doc in VALID]
    for _, bad in INVALID[:-1]:
        (tmp_path / "list.json").write_text(json.dumps(valid[:3] + [bad] + valid[3:]))
        assert ctl("create", "-f", "list.json")[0] == 1
        assert dump(ds) == {}


@pytest.mark.parametrize("how", ["yaml file", "json file", "yaml stdin", "json stdin"])
def test_every_kind_of_calicos_crud_test_round_trips(ctl, tmp_path, how):
    form, source = how.split()
    for name, document in VALID:
        text = yaml.safe_dump(document) if form == "yaml" else json.dumps(document)
        (tmp_path / f"{name}.{form}").write_text(text)
        args = ("-f", f"{name}.{form}") if source == "file" else ("-f", "-")
        stdin = text if source == "stdin" else None
        assert ctl("create", *args, stdin=stdin) == (0, f"Successfully created 1 '{document['kind']}' resource(s)\n")
        assert stored(ctl, document["kind"]) == [document], name
        assert ctl("delete", *args, stdin=stdin) == (0, f"Successfully deleted 1 '{document['kind']}' resource(s)\n")
        assert stored(ctl, document["kind"]) == [], name


@pytest.mark.parametrize("kind", [kind for kind, *_ in PAIRS])
def test_two_of_a_kind_from_a_file_and_from_stdin(ctl, tmp_path, kind):
    (_, first, second), = [pair for pair in PAIRS if pair[0] == kind]
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(first))
    assert ctl("create", "-f", "one.yaml")[0] == 0
    assert ctl("create", "-f", "-", stdin=json.dumps(second))[0] == 0
    assert same(stored(ctl, kind), [first, second])
    (tmp_path / "both.yaml").write_text(ctl("get", kind, "-o", "yaml")[1])  # get's output is input again
    assert ctl("delete", "-f", "both.yaml") == (0, f"Successfully deleted 2 '{kind}' resource(s)\n")
    assert stored(ctl, kind) == []


@pytest.mark.parametrize("index", range(len(UPDATES)))
def test_apply_create_skip_exists_replace_and_delete_as_calicos_crud_test(ctl, tmp_path, index):
    kind, first, second = UPDATES[index]
    (tmp_path / "data1.yaml").write_text(yaml.safe_dump(first))
    (tmp_path / "data2.json").write_text(json.dumps(second))
    assert ctl("apply", "-f", "data1.yaml") == (0, f"Successfully applied 1 '{kind}' resource(s)\n")
    assert stored(ctl, kind) == [first]
    assert ctl("create", "-f", "data2.json", "--skip-exists") == (0, f"Successfully created 1 '{kind}' resource(s)\n")
    assert stored(ctl, kind) == [first]
    assert ctl("replace", "-f", "data2.json") == (0, f"Successfully replaced 1 '{kind}' resource(s)\n")
    assert stored(ctl, kind) == [second]
    assert ctl("apply", "-f", "data1.yaml")[0] == 0
    assert stored(ctl, kind) == [first]
    assert ctl("delete", "--filename=data1.yaml") == (0, f"Successfully deleted 1 '{kind}' resource(s)\n")
    assert stored(ctl, kind) == []


def test_a_conflict_midway_is_a_partial_success_as_calicoctl_reports_it(ctl):
    profiles = [{"apiVersion": "v1", "kind": "profile", "metadata": {"name": name}} for name in ("a", "b", "c")]
    assert ctl("create", "-f", "-", stdin=json.dumps(profiles[1:2]))[0] == 0
    assert ctl("create", "-f", "-", stdin=json.dumps(profiles)) == (1, (
        "Partial success: created the first 1 out of 3 'profile' resources:\n"
        "Hit error: resource already exists: Profile(name=b)\n"))
    assert [p["metadata"]["name"] for p in stored(ctl, "profile")] == ["a", "b"]
    assert ctl("create", "-f", "-", "--skip-exists", stdin=json.dumps(profiles)) == (
        0, "Successfully created 3 'profile' resource(s)\n")
    assert ctl("create", "-f", "-", stdin=json.dumps(profiles[:2])) == (
        1, "Failed to create any 'profile' resources: resource already exists: Profile(name=a)\n")
    pool = {"apiVersion": "v1", "kind": "ipPool", "metadata": {"cidr": "10.9.0.0/16"}}
    assert ctl("replace", "-f", "-", stdin=json.dumps([pool, profiles[0]])) == (
        1, "Failed to replace any resources: resource does not exist: IPPool(cidr=10.9.0.0/16)\n")
    assert ctl("delete", "-f", "-", stdin=json.dumps(profiles[::-1] + [pool])) == (1, (
        "Partial success: deleted the first 3 out of 4 resources:\n"
        "Hit error: resource does not exist: IPPool(cidr=10.9.0.0/16)\n"))
    assert ctl("delete", "-f", "-", "--skip-not-exists", stdin=json.dumps(profiles + [pool])) == (
        0, "Successfully deleted 4 resource(s)\n")


def test_get_of_a_name_that_does_not_exist_shows_no_rows(ctl):
    assert ctl("get", "profile", "nothing") == (0, "NAME   \n")
    assert ctl("get", "profile", "nothing", "-o", "yaml") == (0, "[]\n")


def test_custom_columns_for_every_kind(ctl):
    ctl("create", "-f", "-", stdin=json.dumps([doc for _, doc in VALID]))
    assert ctl("get", "ipPool", "-o", "custom-columns=CIDR,NAT") == (
        0, "CIDR          NAT     \n10.0.1.0/24   false   \n10.0.2.0/24   false   \n")
    assert ctl("get", "hostEndpoint", "-o", "custom-columns=NAME,INTERFACE,PROFILES") == (0, (
        "NAME        INTERFACE   PROFILES      \n"
        "endpoint1   eth0        prof1,prof2   \n"
        "endpoint2   cali7       prof1,prof2   \n"))
    assert ctl("get", "policy", "-o", "custom-columns=ORDER,NAME") == (
        0, "ORDER    NAME      \n100      policy1   \n100000   policy2   \n")
    assert ctl("get", "bgpPeer", "-o", "custom-columns=PEERIP,ASN") == (
        0, "PEERIP          ASN     \n192.168.0.250   64514   \nfd5f::6:ee      64590   \n")
    assert ctl("get", "profile", "-o", "custom-columns=TAGS") == (0, "TAGS         \ntag1,tag2s   \ntag1,tag2s   \n")
    assert ctl("get", "node", "-o", "custom-columns=NAME,ASN,IPV4") == (0, "NAME   ASN   IPV4   \n")
    assert ctl("get", "wep", "-o", "custom-columns=NAME,MAC")[0] == 0
    assert ctl("get", "ipPool", "-o", "custom-columns=CIDR,NETWORK") == (
        1, "Unknown heading NETWORK, valid values are: CIDR, NAT, IPIP\n")
    assert ctl("get", "ipPool", "-o", "custom-columns=") == (1, "need to specify at least one column\n")
    assert ctl("get", "ipPool", "-o", "tabular") == (1, "unrecognized output format 'tabular'\n")


def test_host_endpoints_get_by_node_and_delete_by_name(ctl, ds):
    ctl("create", "-f", "-", stdin=json.dumps([doc for _, doc in VALID if doc["kind"] == "hostEndpoint"]))
    assert ds.get("/calico/v1/host/host1/endpoint/endpoint1").value["name"] == "eth0"
    assert ctl("get", "hep", "--node", "host2", "-o", "wide") == (0, (
        "NODE    NAME        INTERFACE   IPS   PROFILES      \nhost2   endpoint2   cali7             prof1,prof2   \n"))
    assert ctl("delete", "hostEndpoint", "endpoint2") == (
        1, "Failed to delete resource: a hostEndpoint is named by --node and NAME\n")
    assert ctl("delete", "hostEndpoint", "endpoint2", "--node", "host2") == (
        0, "Successfully deleted 1 'hostEndpoint' resource(s)\n")
    assert ctl("get", "heps") == (0, "NODE    NAME        \nhost1   endpoint1   \n")


NODE = "- apiVersion: v1\n  kind: node\n  metadata: {name: host1}\n  spec: {bgp: {ipv4Address: 172.16.0.1/16}}\n"


def peer(metadata: str, asn: str = "64512") -> str:
    return f"- apiVersion: v1\n  kind: bgpPeer\n  metadata: {{{metadata}}}\n  spec: {{asNumber: {asn}}}\n"


V6_POOL = "- apiVersion: v1\n  kind: ipPool\n  metadata: {cidr: fd00:10::/48}\n"
BAD_IPV6 = {
    "overlaps a stored IPv6 pool": (V6_POOL.replace("fd00:10::/48", "fd00:10:0:20::/64"),
                                    "error with field CIDR = 'fd00:10:0:20::/64' (IP pool range overlaps with IP pool "
                                    "fd00:10::/48)"),
    "IPv6 pool smaller than a /122 block": (V6_POOL.replace("/48", "/123"), "error with field CIDR = 'fd00:10::/123' "
                                            "(IP pool size is too small (min /122) for use with Calico IPAM)"),
    "link-local IPv6 pool": (V6_POOL.replace("fd00:10::/48", "fe80::/64"), "error with field CIDR = 'fe80::/64' "
                             "(IP pool range overlaps with IPv6 Link Local range fe80::/10)"),
    "IPv6 address as a node's IPv4 address": (NODE.replace("172.16.0.1/16", "fd00:3::1/64"),
                                              "error with field BGP.IPv4Address = 'fd00:3::1/64' "
                                              "(invalid IPv4 address and subnet specified)"),
    "IPv4 address as a node's IPv6 address": (NODE.replace("{ipv4Address: 172.16.0.1/16}", "{ipv6Address: 172.16.0.1}"),
                                              "error with field BGP.IPv6Address = '172.16.0.1/32' "
                                              "(invalid IPv6 address and subnet specified)"),
}


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
    **BAD_IPV6,
}


@pytest.mark.parametrize("name", BAD)
def test_bad_bgp_and_ipv6_input_is_refused_in_calicos_words_and_stores_nothing(ctl, ds, name):
    assert ctl("create", "-f", "-", stdin=V6_POOL + NODE)[0] == 0
    before = dump(ds)
    text, message = BAD[name]
    for action in ("create", "apply"):
        code, output = ctl(action, "-f", "-", stdin=text)
        assert code == 1 and message in output, (action, output)
        assert dump(ds) == before


def test_a_node_peer_of_a_node_created_in_the_same_batch_is_fine(ctl, ds):
    code, output = ctl("create", "-f", "-", stdin=NODE + peer("scope: node, node: host1, peerIP: 172.16.0.9", '"0.65001"'))
    assert code == 0, output
    assert ds.get(keys.bgp_host_peers_v4("host1") + "172.16.0.9").value == {"ip": "172.16.0.9", "as_num": "65001"}


def test_asdot_in_plain_decimal_out(ctl, ds):
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


def test_cross_subnet_round_trips(ctl, ds):
    pool = ("- apiVersion: v1\n  kind: ipPool\n  metadata: {cidr: 10.10.0.0/16}\n"
            "  spec: {ipip: {enabled: true, mode: cross-subnet}}\n")
    assert ctl("create", "-f", "-", stdin=pool)[0] == 0
    assert ds.get(keys.POOLS_V4 + "10.10.0.0-16").value["ipip_mode"] == "cross-subnet"
    spec = yaml.safe_load(ctl("get", "ipPool", "10.10.0.0/16", "-o", "yaml")[1])[0]["spec"]
    assert spec["ipip"] == {"enabled": True, "mode": "cross-subnet"}


def test_ipv6_peers_of_either_scope_live_beside_but_apart_from_the_ipv4_ones(ctl, ds):
    text = NODE + peer("scope: global, peerIP: fd00:3::1") + peer("scope: node, node: host1, peerIP: fd00:3::2")
    assert ctl("create", "-f", "-", stdin=text + peer("scope: global, peerIP: 172.16.0.9"))[0] == 0
    assert [e.key for e in ds.list("/calico/bgp/v1/") if "/peer_v" in e.key] == [
        keys.GLOBAL_PEERS_V4 + "172.16.0.9", keys.GLOBAL_PEERS_V6 + "fd00:3::1", keys.bgp_host_peers_v6("host1") + "fd00:3::2"]
    assert ctl("get", "bgpPeer", "--scope", "node")[1].splitlines()[1].split() == ["node", "fd00:3::2", "host1", "64512"]
    assert ctl("delete", "bgpPeer", "fd00:3::2", "--scope", "node", "--node", "host1")[0] == 0
    assert ctl("delete", "bgpPeer", "fd00:3::1", "--scope", "global")[0] == 0
    assert [e.key for e in ds.list("/calico/bgp/v1/") if "/peer_v" in e.key] == [keys.GLOBAL_PEERS_V4 + "172.16.0.9"]
