"""Felix's policy: the renderer and the reference model without a cluster (what nft receives for
the seed's profiles, and that the model and nft's own parser agree with the rendering); host
endpoints as Felix 2.x enforces them, rendered for IPv4 and IPv6 (no root) and live on two hosts
(a host endpoint on host2's uplink whose profile lets in only TCP 80 closes 8080 and ping, keeps the failsafes (BGP,
etcd) open, leaves workloads alone, and goes away without a trace); policy in the dataplane, live
(the seed's two networks are isolated by address too (ICMP, TCP, UDP), a profile edited with
calicoctl changes reachability on every host and back, and a selector policy comes before the
profiles).

Last, isolation as a property, on a live cluster: hypothesis draws networks, workloads placed on
random hosts, and extra profile rules or selector policies; the workloads are dual-stack (`--ipv6`
networks, nodes with `--ip6`), and the probes measure every ordered pair over ICMP, TCP 80 and
UDP 69, over IPv4 and over IPv6 (ICMPv6); the result must equal calisim.testing.policy_model's.
One cluster serves every example (workloads, networks and policy are replaced between them).
Sizes follow CALISIM_HYPOTHESIS_PROFILE: ci = 3 hosts, 2 to 12 workloads; scale = 10 hosts,
50 to 100 workloads.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import pytest
import yaml
from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st

import topologies
from calisim.datastore import keys
from calisim.datastore.resources import HostEndpoint, IPPool, parse_documents
from calisim.datastore.resources import Policy as PolicyResource, Profile as ProfileResource
from calisim.emulation import Cluster, ClusterError, wait_until
from calisim.felix import policy
from calisim.felix.policy import Endpoint, Model, Policy, PolicyError, Profile
from calisim.probes import matrix_from
from calisim.testing.policy_model import Packet, allowed, explain

from tests.conftest import in_a_throwaway_netns, replay


# x$ probe DEST PROTO: the scapy/socket probe from inside workload x (exit 0 = reachable).
SEED_NETWORKS = r"""
host1$ calicoctl node run
host2$ calicoctl node run
host1$ echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, spec: {ipip: {enabled: true}, nat-outgoing: true}}' | calicoctl create -f -
host1$ calicoctl delete ipPool 192.168.0.0/16
host1$ docker network create --driver calico --ipam-driver calico-ipam net1
host1$ docker network create --driver calico --ipam-driver calico-ipam net2
host1$ docker run --net net1 --name A -d workload
host1$ docker run --net net2 --name B -d workload
host1$ docker run --net net1 --name C -d workload
host2$ docker run --net net2 --name D -d workload
host2$ docker run --net net1 --name E -d workload
host1$ calicoctl get profile -o wide | grep -E '^net1 +net1 +$'
host1$ calicoctl get workloadEndpoint | grep -c ' libnetwork ' | grep -x 5
host1$ calicoctl get wep -o wide | grep -E '^host2 +libnetwork +libnetwork +[0-9a-f]{64} +10\.10\.[0-9.]+/32 +cali[0-9a-f]{11} +net2 +$'
host1$ calicoctl get wep -o yaml | calicoctl apply -f - 2>&1 | grep -q 'managed by the libnetwork plugin; calicoctl only reads them'
# Bad policy is rejected whole, with what is wrong.
host1$ echo '[{apiVersion: v1, kind: profile, metadata: {name: ok}}, {apiVersion: v1, kind: policy, metadata: {name: bad}, spec: {selector: "role = db"}}]' | calicoctl create -f - 2>&1 | grep -q "item 2: policy spec.selector: unexpected '= db' at position 4 in 'role = db'"
host1$ echo '{apiVersion: v1, kind: profile, metadata: {name: bad}, spec: {ingress: [{action: allow, protocol: tcp, destination: {ports: [70000]}}]}}' | calicoctl create -f - 2>&1 | grep -q "70000 is not a port"
host1$ echo '{apiVersion: v1, kind: profile, metadata: {name: bad}, spec: {ingress: [{action: permit}]}}' | calicoctl create -f - 2>&1 | grep -q "'permit' is not allow, deny, log or next-tier"
host1$ echo '{apiVersion: v1, kind: profile, metadata: {name: bad}, spec: {egress: [{action: allow, destination: {ports: [80]}}]}}' | calicoctl create -f - 2>&1 | grep -q "ports need protocol tcp, udp, sctp or udplite"
host1$ calicoctl get profile | grep -E -c '^(ok|bad) ' | grep -x 0
host1$ calicoctl get policy | grep -c . | grep -x 1
# Round trips: what get prints is what replace and create take back.
host1$ calicoctl get profile -o json | calicoctl replace -f - | grep -x "Successfully replaced 2 'profile' resource(s)"
host1$ calicoctl get profile net2 -o yaml > net2.yaml && calicoctl get profile net2 -o yaml | diff - <(calicoctl replace -f net2.yaml > /dev/null && calicoctl get profile net2 -o yaml)
# A workload may not reach its own host (except DHCP and DNS); the host may reach its workloads.
within 10s host1$ ping -c 1 -W 1 $(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' A)
host1! docker exec A ping -c 2 -W 1 192.168.3.229
host1$ docker exec A ping -c 1 -W 1 192.168.3.228
"""

def address(cluster, host, name):
    done = cluster.run(host, f"docker inspect -f '{{{{range .NetworkSettings.Networks}}}}{{{{.IPAddress}}}}{{{{end}}}}' {name}")
    assert done.rc == 0, done.stderr
    return done.stdout.strip()


def probe(cluster, host, source, destination, protocol):
    """Exit code of the probe from inside source (its network namespace): 0 reachable, 1 not."""
    return cluster.run(host, f"nsenter -t $(docker inspect -f '{{{{.State.Pid}}}}' {source}) -n "
                       f"python -m calisim.probes {protocol} {destination}"
                       + (" --count 1" if protocol == "icmp" else "")).rc


def reachable_within(cluster, host, source, destination, protocol, expected: bool, seconds: float = 15) -> bool:
    wait_until(lambda: (probe(cluster, host, source, destination, protocol) == 0) == expected, seconds,
               interval=0.2, what=f"{source} -> {destination} {protocol} reachable={expected}")
    return True


def edit(cluster, kind, name, change):
    """calicoctl get -o yaml | change (a Python statement on d, the list) | calicoctl apply -f -"""
    done = cluster.run("host1", f"calicoctl get {kind} {name} -o yaml | python -c \"import sys, yaml; "
                       f"d = yaml.safe_load(sys.stdin); {change}; print(yaml.safe_dump(d))\" | calicoctl apply -f -")
    assert done.rc == 0 and f"Successfully applied 1 '{kind}' resource(s)" in done.stdout, done.stdout + done.stderr


NO_WEB = """- apiVersion: v1
  kind: policy
  metadata: {name: no-web}
  spec:
    order: 10
    selector: "network == 'net1'"
    ingress: [{action: deny, protocol: tcp, destination: {ports: [80]}}, {action: next-tier}]
    egress: [{action: next-tier}]
"""


@pytest.mark.emulation
def test_networks_are_isolated_by_address_and_profiles_and_policies_change_it_everywhere(untouched, runs):
    with Cluster(topologies.load("two_host")) as cluster:
        replay(cluster, SEED_NETWORKS)
        ip = {name: address(cluster, host, name) for name, host in
              (("A", "host1"), ("B", "host1"), ("C", "host1"), ("D", "host2"), ("E", "host2"))}
        for protocol in ("icmp", "tcp", "udp"):
            assert reachable_within(cluster, "host1", "A", ip["C"], protocol, True)
            assert reachable_within(cluster, "host1", "A", ip["E"], protocol, True)
            assert probe(cluster, "host1", "A", ip["B"], protocol) == 1
            assert probe(cluster, "host1", "A", ip["D"], protocol) == 1
        # A rule no calicoctl would store, written straight to etcd: every host keeps its last good rules.
        rules_key = "/calico/v1/policy/profile/net1/rules"
        good = cluster.run("host1", f'etcdctl --endpoints "$ETCD_ENDPOINTS" get --print-value-only {rules_key}').stdout.strip()
        bad = '{"inbound_rules": [{"action": "bogus"}], "outbound_rules": [{"action": "allow"}]}'
        assert cluster.run("host1", f"etcdctl --endpoints \"$ETCD_ENDPOINTS\" put {rules_key} '{bad}'").rc == 0
        for host in ("host1", "host2"):
            wait_until(lambda: "kept the last good policy: unknown action 'bogus'" in
                       cluster.run(host, "cat /var/log/calico/node.log").stdout, 15, what=f"{host} to refuse the rule")
        assert probe(cluster, "host1", "A", ip["E"], "tcp") == 0 and probe(cluster, "host1", "A", ip["B"], "tcp") == 1
        assert cluster.run("host1", f"etcdctl --endpoints \"$ETCD_ENDPOINTS\" put {rules_key} '{good}'").rc == 0
        # Let net1 in to net2's workloads: B (host1) and D (host2) follow, then go back.
        edit(cluster, "profile", "net2", "d[0]['spec']['ingress'].append({'action': 'allow', 'source': {'tag': 'net1'}})")
        for destination in ("B", "D"):
            assert reachable_within(cluster, "host1", "A", ip[destination], "tcp", True)
        assert probe(cluster, "host2", "D", ip["A"], "tcp") == 1  # net1 did not let net2 in
        edit(cluster, "profile", "net2", "d[0]['spec']['ingress'].pop()")
        for destination in ("B", "D"):
            assert reachable_within(cluster, "host1", "A", ip[destination], "tcp", False)
        # A selector policy comes before the profiles: no TCP 80 into net1, the rest goes on (next-tier).
        edit(cluster, "profile", "net1", "d[0]['metadata']['labels'] = {'network': 'net1'}")
        created = cluster.run("host1", f"calicoctl create -f - <<'EOF'\n{NO_WEB}EOF")
        assert created.rc == 0, created.stdout + created.stderr
        listed = cluster.run("host1", "calicoctl get policy -o wide && calicoctl get policy -o yaml | calicoctl replace -f -")
        assert "no-web   10      network == 'net1'" in listed.stdout and "Successfully replaced 1 'policy'" in listed.stdout
        assert reachable_within(cluster, "host1", "A", ip["E"], "tcp", False)
        assert probe(cluster, "host1", "A", ip["E"], "icmp") == 0 and probe(cluster, "host1", "A", ip["C"], "udp") == 0
        assert cluster.run("host1", "calicoctl delete policy no-web").rc == 0
        assert reachable_within(cluster, "host1", "A", ip["E"], "tcp", True)


NET1 = Profile("net1", ("net1",), ({"action": "allow", "src_tag": "net1"},), ({"action": "allow"},), (("net", "one"),))
NET2 = Profile("net2", ("net2",), ({"action": "allow", "src_tag": "net2"},), ({"action": "allow"},), (("net", "two"),))
A = Endpoint("host1", "caliaaaaaaaaaaa", ("10.10.0.1",), ("net1",))
B = Endpoint("host1", "calibbbbbbbbbbb", ("10.10.0.2",), ("net2",))
E = Endpoint("host2", "calieeeeeeeeeee", ("10.10.0.65",), ("net1",))
SEED = Model((A, B, E), {"net1": NET1, "net2": NET2}, ("10.10.0.0/16",), ("10.10.0.0/16",))


def test_the_seed_renders_endpoint_chains_tag_sets_and_nat():
    text = policy.render(SEED, "host1")
    tag_net1 = policy.set_name("tag", "net1")
    assert "elements = { 10.10.0.1, 10.10.0.65 }" in text  # tags span hosts
    assert '"caliaaaaaaaaaaa" : jump from_caliaaaaaaaaaaa' in text and "calieeeeeeeeeee" not in text.split("set all_pools")[1]
    assert f"ip saddr @{tag_net1} meta mark set meta mark | 0x1000000 return" in text
    assert "ip saddr @nat_pools ip daddr != @all_pools masquerade" in text
    assert text.count("chain to_cali") == 2 and text.rstrip().endswith("}")


def test_rules_render_every_match_and_refuse_what_nft_cannot_say():
    rule = {"action": "deny", "protocol": "tcp", "!src_net": "10.0.0.0/8", "dst_ports": [80, "1000:2000"],
            "!dst_tag": "web", "src_selector": "role == 'db'"}
    assert policy.render_rule(rule) == (f"meta l4proto tcp ip saddr @{policy.set_name('sel', rule['src_selector'])} "
                                        f"ip saddr != 10.0.0.0/8 th dport {{ 80, 1000-2000 }} "
                                        f"ip daddr != @{policy.set_name('tag', 'web')} drop")
    assert policy.render_rule({"action": "allow", "protocol": "icmp", "icmp_type": 8, "!icmp_code": 1}) == \
        "meta l4proto icmp icmp type 8 icmp code != 1 meta mark set meta mark | 0x1000000 return"
    assert policy.render_rule({"action": "next-tier"}, in_tier=True) == "meta mark set meta mark | 0x2000000 return"
    assert policy.render_rule({"action": "allow", "ip_version": 6}) is None
    with pytest.raises(PolicyError, match="unknown action 'bogus'"):
        policy.render_rule({"action": "bogus"})
    with pytest.raises(PolicyError, match="ports need protocol"):
        policy.render_rule({"action": "allow", "dst_ports": [80]})


def test_the_model_isolates_networks_and_applies_policies_before_profiles():
    assert allowed(SEED, Packet(A, E, "tcp")) and not allowed(SEED, Packet(A, B, "icmp"))
    no_web = Policy("no-web", "net == 'one'", 10, ({"action": "deny", "protocol": "tcp", "dst_ports": [80]},
                                                    {"action": "next-tier"}), ({"action": "next-tier"},))
    undecided = Policy("quiet", "net == 'two'", 20, ({"action": "log"},), ())
    model = Model(SEED.endpoints, SEED.profiles, (), ("10.10.0.0/16",), (no_web, undecided))
    assert not allowed(model, Packet(A, E, "tcp")) and allowed(model, Packet(A, E, "udp"))
    assert not allowed(model, Packet(B, B, "udp"))  # a tier where no policy decides drops
    assert [p.name for p in model.policies_for(A)] == ["no-web"]


@pytest.mark.emulation
def test_nft_accepts_every_rendering_in_a_private_namespace():
    """nft's own parser and the kernel (in the test session's private namespace) take the table."""
    model = Model(SEED.endpoints, SEED.profiles, SEED.nat_pools, SEED.all_pools,
                  (Policy("p", "has(net)", 1, ({"action": "allow", "protocol": "udp", "src_selector": "net == 'two'",
                                                "!dst_ports": ["53:54"]},), ({"action": "next-tier"},)),))
    text = policy.render(model, "host1")
    done = subprocess.run(["unshare", "--net", "nft", "-f", "-"], input=text, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr + text


A6 = Endpoint("host1", "caliaaaaaaaaaaa", ("10.10.0.1", "fd80::1"), ("net1",))
B6 = Endpoint("host1", "calibbbbbbbbbbb", ("10.10.0.2", "fd80::2"), ("net2",))
E6 = Endpoint("host2", "calieeeeeeeeeee", ("10.10.0.65", "fd80::41"), ("net1",))
DUAL = Model((A6, B6, E6), {"net1": NET1, "net2": NET2}, ("10.10.0.0/16", "fd80::/64"), ("10.10.0.0/16", "fd80::/64"))


def test_with_an_ipv6_pool_an_ip6_table_follows_with_the_same_chains_for_ipv6_addresses():
    text = policy.render(DUAL, "host1")
    v4, v6 = text.split("table ip6 calico {\n")
    v4_only = tuple(Endpoint(e.host, e.interface, e.addresses[:1], e.profiles) for e in DUAL.endpoints)
    assert v4 == policy.render(Model(v4_only, DUAL.profiles, ("10.10.0.0/16",), ("10.10.0.0/16",)), "host1")
    assert "fd80" not in v4 and "10.10." not in v6
    assert "type ipv6_addr" in v6 and "elements = { fd80::1, fd80::41 }" in v6  # the net1 tag, both hosts
    assert f"ip6 saddr @{policy.set_name('tag', 'net1')} meta mark set meta mark | 0x1000000 return" in v6
    assert "ip6 saddr @nat_pools ip6 daddr != @all_pools masquerade" in v6
    assert policy.NDP_TO_HOST in v6 and policy.NDP_TO_HOST not in v4  # a workload must reach its fe80:: gateway
    assert v6.count("chain to_cali") == 2 and "udp dport 547 accept" in v6
    pool_gone = Model(DUAL.endpoints, DUAL.profiles, (), ("10.10.0.0/16",))  # IPv6 workloads stay isolated
    assert "table ip6 calico {" in policy.render(pool_gone, "host1")


def test_without_ipv6_support_no_ip6_table_is_programmed_at_all():
    assert "table ip6 calico" not in policy.render(DUAL, "host1", ipv6_support=False)
    assert policy.render(DUAL, "host1", ipv6_support=False) == policy.render(DUAL, "host1").split("table ip6")[0]


def test_each_rule_goes_to_the_tables_of_the_versions_it_can_match():
    v6 = policy.FAMILIES[6]
    assert policy.render_rule({"action": "allow", "protocol": "icmpv6", "icmp_type": 128}, family=v6) == \
        "meta l4proto icmpv6 icmpv6 type 128 meta mark set meta mark | 0x1000000 return"
    assert policy.render_rule({"action": "allow", "protocol": "icmpv6"}) is None
    assert policy.render_rule({"action": "allow", "protocol": "icmp"}, family=v6) is None
    assert policy.render_rule({"action": "deny", "src_net": "10.0.0.0/8"}, family=v6) is None
    assert policy.render_rule({"action": "deny", "!src_net": "10.0.0.0/8"}, family=v6) == "drop"  # holds for IPv6
    assert policy.render_rule({"action": "deny", "src_net": "fd00::/8"}, family=v6) == "ip6 saddr fd00::/8 drop"
    assert policy.render_rule({"action": "allow", "ip_version": 4}, family=v6) is None
    assert policy.render_rule({"action": "allow", "ip_version": 6}, family=v6) is not None


def test_the_model_decides_ipv6_packets_by_ipv6_addresses_and_icmpv6():
    assert allowed(DUAL, Packet(A6, E6, "icmp", 6)) and not allowed(DUAL, Packet(A6, B6, "udp", 6))
    assert Packet(A6, E6, "tcp", 6).addresses == ("fd80::1", "fd80::41")
    pings = Profile("net2", ("net2",), ({"action": "allow", "protocol": "icmpv6", "icmp_type": 128},), ({"action": "allow"},))
    model = Model(DUAL.endpoints, {**DUAL.profiles, "net2": pings}, (), DUAL.all_pools)
    assert allowed(model, Packet(A6, B6, "icmp", 6)) and not allowed(model, Packet(A6, B6, "icmp", 4))
    v4_only = Profile("net2", ("net2",), ({"action": "allow", "src_net": "10.10.0.0/16"},), ({"action": "allow"},))
    model = Model(DUAL.endpoints, {**DUAL.profiles, "net2": v4_only}, (), DUAL.all_pools)
    assert allowed(model, Packet(A6, B6, "tcp", 4)) and not allowed(model, Packet(A6, B6, "tcp", 6))


@pytest.mark.emulation
def test_nft_takes_both_tables_in_one_transaction_and_a_later_ipv4_only_one_drops_the_ip6_table():
    script = ("import subprocess\nfrom calisim.felix import policy\n"
              f"policy.apply({policy.render(DUAL, 'host1')!r})\n"
              "print(subprocess.run(['nft', 'list', 'tables'], capture_output=True, text=True).stdout)\n"
              f"policy.apply({policy.render(SEED, 'host1')!r})\n"
              "print(subprocess.run(['nft', 'list', 'tables'], capture_output=True, text=True).stdout)\n")
    assert in_a_throwaway_netns(script).split() == ["table", "ip", "calico", "table", "ip6", "calico", "table", "ip", "calico"]


WEB_HOST = Profile("web-host", (), ({"action": "allow", "protocol": "tcp", "dst_ports": [80]},), ({"action": "allow"},))
UPLINK = Endpoint("host2", "host2-eth0", ("192.168.3.228",), ("web-host",), (("role", "web"),), on_host=True)
WORKLOAD = Endpoint("host2", "calieeeeeeeeeee", ("10.10.0.65",), ("web-host",))
MODEL = Model((UPLINK, WORKLOAD), {"web-host": WEB_HOST}, (), ("10.10.0.0/16",), (),
              ("192.168.3.228", "192.168.3.229"))


def test_host_endpoints_are_read_from_their_v1_keys_with_their_labels():
    (endpoint,) = parse_documents({"apiVersion": "v1", "kind": "hostEndpoint",
                                   "metadata": {"name": "uplink", "node": "host2", "labels": {"role": "web"}},
                                   "spec": {"interfaceName": "host2-eth0", "expectedIPs": ["192.168.3.228"],
                                            "profiles": ["web-host"]}})
    entries = {**endpoint.writes(), keys.host_bird_ip("host1"): "192.168.3.229",
               keys.host_bird_ip("host2"): "192.168.3.228"}
    model = policy.load(entries)
    assert model.endpoints == (UPLINK,) and model.host_addresses == ("192.168.3.228", "192.168.3.229")
    assert isinstance(endpoint, HostEndpoint)


def test_a_kept_loader_reads_what_a_fresh_load_reads_decoding_only_what_changed():
    """Felix keeps one Loader: pass after pass its model equals a fresh load of the same keys
    (endpoints changed, gone, deactivated, added; a profile, a pool, an address and a Failsafe
    setting), and an endpoint whose value the mirror kept is not decoded again."""
    workload = {"state": "active", "name": "cali1", "profile_ids": ["net1"], "ipv4_nets": ["10.0.0.1/32"]}
    first_key, second_key, third_key = (keys.workload_endpoint(h, "libnetwork", "libnetwork", e)
                                        for h, e in (("host1", "e1"), ("host2", "e2"), ("host2", "e3")))
    profile = ProfileResource("net1", ("net1",), (), ({"action": "allow", "src_tag": "net1"},), ({"action": "allow"},))
    entries = {first_key: workload, second_key: {**workload, "name": "cali2", "ipv4_nets": ["10.0.0.2/32"]},
               keys.host_bird_ip("host1"): "192.168.3.229", **profile.writes(),
               keys.host_endpoint("host2", "uplink"): {"name": "host2-eth0", "expected_ipv4_addrs": ["192.168.3.228"]}}
    loader = policy.Loader()
    first = loader.load(entries)
    assert first == policy.load(entries) and [e.interface for e in first.endpoints] == ["cali1", "cali2", "host2-eth0"]
    changes = [{second_key: {**workload, "name": "cali2", "ipv4_nets": ["10.0.0.9/32"]}},
               {second_key: {**workload, "name": "cali2", "state": "inactive"}, third_key: {**workload, "name": "cali3"}},
               {**IPPool(ipaddress.ip_network("10.0.0.0/16"), nat_outgoing=True).writes(),
                keys.host_bird_ip("host2"): "192.168.3.228", keys.host_config("host2", "FailsafeInboundHostPorts"): "22"},
               {keys.PROFILES + "net1/rules": {"inbound_rules": [], "outbound_rules": []}}]
    for change in changes:
        entries = {**entries, **change}
        assert loader.load(entries) == policy.load(entries)
    del entries[third_key]
    model = loader.load(entries)
    assert model == policy.load(entries) and [e.interface for e in model.endpoints] == ["cali1", "host2-eth0"]
    assert model.endpoints[0] is first.endpoints[0]  # cali1's value was the same object every pass


def test_a_host_endpoint_gets_input_and_output_chains_with_failsafes_first():
    text = policy.render(MODEL, "host2")
    assert '"host2-eth0" : jump host_in_host2-eth0' in text and '"host2-eth0" : jump host_out_host2-eth0' in text
    inbound = text.split("chain host_in_host2-eth0 {")[1].split("}")[0].split("\n")
    assert inbound[1].strip() == "jump failsafe_in" and inbound[-2].strip() == "drop"
    assert "tcp dport { 22, 179, 2379, 2380, 4001, 7001 } accept" in text.split("chain failsafe_in {")[1]
    assert "udp dport { 53, 67 } accept" in text.split("chain failsafe_out {")[1]
    assert "meta l4proto 4 ip saddr @calico_hosts accept" in text  # tunnelled workload traffic passes
    assert "type filter hook output" in text
    # The workload keeps its own chains; host1 (no host endpoint) gets no output hook at all.
    assert "chain to_calieeeeeeeeeee {" in text and "failsafe" not in text.split("chain to_calieeeeeeeeeee {")[1].split("}")[0]
    assert "hook output" not in policy.render(MODEL, "host1")


UPLINK6 = Endpoint("host2", "host2-eth0", ("192.168.3.228", "fd00:3::228"), ("web-host",), (("role", "web"),),
                   on_host=True)


def chain_rules(text: str, table: str, name: str) -> list[str]:
    body = text.split(f"table {table} calico {{")[1].split(f"chain {name} {{")[1].split("\n  }")[0]
    return [line.strip() for line in body.strip().split("\n")]


def test_a_host_endpoint_holds_for_ipv6_with_the_same_failsafes_and_neighbour_discovery():
    """As Felix 2.x's ip6tables: the endpoint's chains in `ip6 calico` too, its profile's rules with
    IPv6 addresses, the failsafe ports, NDP let by; no IPIP/VXLAN exemptions (IPv4's tunnels)."""
    model = replace(MODEL, endpoints=(UPLINK6, WORKLOAD))
    text = policy.render(model, "host2")
    for table in ("ip", "ip6"):
        assert chain_rules(text, table, "host_in_host2-eth0")[0] == "jump failsafe_in"
        assert "tcp dport { 22, 179, 2379, 2380, 4001, 7001 } accept" in chain_rules(text, table, "failsafe_in")
        assert "type filter hook output priority filter; policy accept;" in chain_rules(text, table, "output")
    inbound, outbound = chain_rules(text, "ip6", "input"), chain_rules(text, "ip6", "output")
    assert policy.NDP_HOST_ENDPOINT in inbound and policy.NDP_HOST_ENDPOINT in outbound
    assert inbound.index(policy.NDP_HOST_ENDPOINT) < inbound.index('iifname vmap { "host2-eth0" : jump host_in_host2-eth0 }')
    assert "meta l4proto 4 ip daddr @calico_hosts accept" in chain_rules(text, "ip", "output")
    assert "calico_hosts" not in text.split("table ip6 calico {")[1]
    web = policy.Policy("web", "role == 'web'", 1, ({"action": "allow", "src_selector": "role == 'web'"},), ())
    selected = policy.render(replace(model, policies=(web,)), "host2")
    assert "fd00:3::228" in selected.split("table ip6 calico {")[1] and "fd00:3::228" not in selected.split("table ip6")[0]


def test_an_ipv4_only_host_endpoint_still_gets_the_ipv6_table_and_felix_ipv6support_false_none():
    """A host endpoint is an interface: IPv6 traffic on it is policed even with no IPv6 pool or address."""
    ipv4_only = replace(MODEL, all_pools=("10.10.0.0/16",))
    assert "table ip6 calico" in policy.render(ipv4_only, "host2") and "table ip6" not in policy.render(ipv4_only, "host1")
    assert "table ip6" not in policy.render(ipv4_only, "host2", ipv6_support=False)


def test_an_ipv6_expected_ip_finds_its_interface():
    by_address = Endpoint("host2", "", ("fd00:3::228",), ("web-host",), on_host=True)
    resolved = policy.with_interfaces(replace(MODEL, endpoints=(by_address,)), "host2",
                                      {"host2-eth0": {"192.168.3.228", "fd00:3::228"}, "lo": {"::1"}})
    assert resolved.local("host2", on_host=True) == [replace(by_address, interface="host2-eth0")]


def test_policies_select_host_endpoints_by_their_own_labels():
    web_only = Policy("web-only", "role == 'web'", 1, ({"action": "deny", "protocol": "udp"},), ())
    model = Model(MODEL.endpoints, MODEL.profiles, (), MODEL.all_pools, (web_only,), MODEL.host_addresses)
    assert [p.name for p in model.policies_for(UPLINK)] == ["web-only"] and model.policies_for(WORKLOAD) == []
    assert f"jump {policy.policy_chain('web-only', 'to')}" in policy.render(model, "host2")


@pytest.mark.emulation
@pytest.mark.parametrize("uplink", [UPLINK, UPLINK6], ids=["ipv4", "dual-stack"])
def test_nft_takes_a_ruleset_with_host_endpoints(uplink):
    text = policy.render(replace(MODEL, endpoints=(uplink, WORKLOAD)), "host2")
    done = subprocess.run(["unshare", "--net", "nft", "-f", "-"], input=text, capture_output=True, text=True)
    assert done.returncode == 0 and "table ip6 calico" in text, done.stderr


CLUSTER = r"""
host1$ calicoctl node run
host2$ calicoctl node run
host1$ echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, spec: {ipip: {enabled: true}}}' | calicoctl create -f -
host1$ calicoctl delete ipPool 192.168.0.0/16
host1$ docker network create --driver calico --ipam-driver calico-ipam net1
host1$ docker run --net net1 --name A -d workload
host2$ docker run --net net1 --name E -d workload
host2$ (setsid python -m http.server 80 & setsid python -m http.server 8080 &) > /dev/null 2>&1
host1$ calicoctl create -f - <<EOF
- apiVersion: v1
  kind: profile
  metadata: {name: web-host}
  spec:
    ingress: [{action: allow, protocol: tcp, destination: {ports: [80]}}]
    egress: [{action: allow}]
EOF
"""


def tcp_open(cluster, source: str, destination: str, port: int) -> bool:
    return cluster.run(source, f"timeout 2 bash -c 'echo > /dev/tcp/{destination}/{port}'").rc == 0


def pings(cluster, source: str, destination: str) -> bool:
    return cluster.run(source, f"ping -c 1 -W 1 {destination}").rc == 0


def workload_reaches(cluster, host: str, source: str, destination: str, protocol: str) -> bool:
    return probe(cluster, host, source, destination, protocol) == 0


@pytest.mark.emulation
def test_a_host_endpoint_lets_in_only_what_its_profile_allows_and_keeps_the_failsafes(untouched, runs):
    with Cluster(topologies.load("two_host")) as cluster:
        replay(cluster, CLUSTER)
        host2 = "192.168.3.228"
        uplink = cluster.run("host2", f"ip -o -4 addr show | awk '/{host2}\\//{{print $2}}'").stdout.strip()
        a, e = address(cluster, "host1", "A"), address(cluster, "host2", "E")

        def reachability():
            return {"80": tcp_open(cluster, "host1", host2, 80), "8080": tcp_open(cluster, "host1", host2, 8080),
                    "ping": pings(cluster, "host1", host2),
                    "A->E": all(workload_reaches(cluster, "host1", "A", e, p) for p in ("tcp", "icmp")),
                    "E->A": all(workload_reaches(cluster, "host2", "E", a, p) for p in ("tcp", "icmp"))}

        everything = {"80": True, "8080": True, "ping": True, "A->E": True, "E->A": True}
        wait_until(lambda: reachability() == everything, 30, interval=0.5, what="everything reachable before")

        created = cluster.run("host1", f"calicoctl create -f - <<EOF\n- apiVersion: v1\n  kind: hostEndpoint\n"
                                       f"  metadata: {{name: uplink, node: host2, labels: {{role: web}}}}\n"
                                       f"  spec: {{interfaceName: {uplink}, expectedIPs: [{host2}], profiles: [web-host]}}\n"
                                       f"EOF")
        assert created.stdout == "Successfully created 1 'hostEndpoint' resource(s)\n", created.stdout + created.stderr
        listed = cluster.run("host2", "calicoctl get hostEndpoint -o wide")  # etcd from host2: outbound failsafe
        assert listed.stdout.split("\n")[1].split() == ["host2", "uplink", uplink, host2, "web-host"], listed.stdout
        wait_until(lambda: not tcp_open(cluster, "host1", host2, 8080), 20, interval=0.5, what="8080 closed")
        assert reachability() == {**everything, "8080": False, "ping": False}
        # BGP: sessions restarted across the host endpoint come back (new TCP connections to 179 both ways).
        assert cluster.bgp_established("host2") == 1
        restarted = cluster.run("host2", "birdc -s /var/run/calico/bird.ctl restart Mesh_192_168_3_229")
        assert restarted.rc == 0, restarted.stdout + restarted.stderr
        wait_until(lambda: cluster.bgp_established("host1") == cluster.bgp_established("host2") == 1, 60,
                   interval=0.5, what="the mesh session re-established across the host endpoint")
        assert "Established" in cluster.run("host2", "calicoctl node status").stdout
        assert workload_reaches(cluster, "host1", "A", e, "tcp")

        deleted = cluster.run("host2", "calicoctl delete hostEndpoint uplink --node host2")
        assert deleted.stdout == "Successfully deleted 1 'hostEndpoint' resource(s)\n", deleted.stdout
        wait_until(lambda: reachability() == everything, 30, interval=0.5, what="everything reachable again")
        assert "hook output" not in cluster.run("host2", "nft list table ip calico").stdout


def test_a_host_endpoint_with_only_expected_ips_applies_to_the_interfaces_holding_them():
    by_address = Endpoint("host2", "", ("192.168.3.228",), ("web-host",), on_host=True)
    elsewhere = Endpoint("host1", "", ("192.168.3.229",), ("web-host",), on_host=True)
    model = Model((by_address, elsewhere, WORKLOAD), MODEL.profiles, (), MODEL.all_pools, (), MODEL.host_addresses)
    resolved = policy.with_interfaces(model, "host2", {"lo": {"127.0.0.1"}, "host2-eth0": {"192.168.3.228"}})
    assert resolved.local("host2", on_host=True) == [replace(by_address, interface="host2-eth0")]
    assert elsewhere in resolved.endpoints  # another host's endpoint is that host's business
    assert "host_in_host2-eth0" in policy.render(resolved, "host2")
    assert policy.with_interfaces(model, "host2", {"host2-eth0": {"192.168.3.99"}}).local("host2", on_host=True) == []


@pytest.mark.emulation
def test_this_hosts_interface_addresses_are_read_over_netlink():
    found = policy.host_interface_addresses()  # the test session's private namespace: lo at least
    assert {"127.0.0.1", "::1"} <= found.get("lo", set())


def test_failsafe_ports_follow_felix_config_global_then_per_host():
    config = {keys.FELIX_CONFIG + "FailsafeInboundHostPorts": "22,2222",
              keys.host_config("host2", "FailsafeOutboundHostPorts"): "udp:53,tcp:2379"}
    model = replace(MODEL, felix_config=config)
    assert model.failsafes("host2", "in") == (("tcp", 22), ("tcp", 2222))
    assert model.failsafes("host2", "out") == (("udp", 53), ("tcp", 2379))
    assert model.failsafes("host1", "out") == policy.FAILSAFE_OUTBOUND
    text = policy.render(model, "host2")
    assert "tcp dport { 22, 2222 } accept" in text.split("chain failsafe_in {")[1].split("chain failsafe_out")[0]
    dual = policy.render(replace(model, endpoints=(UPLINK6, WORKLOAD)), "host2")
    for table in ("ip", "ip6"):  # one setting for both versions, as Felix's
        assert chain_rules(dual, table, "failsafe_out") == ["udp dport { 53 } accept", "tcp dport { 2379 } accept"]
    assert replace(MODEL, felix_config={keys.FELIX_CONFIG + "FailsafeInboundHostPorts": "none"}).failsafes(
        "host2", "in") == ()
    with pytest.raises(policy.PolicyError, match="'ssh' is not a port"):
        replace(MODEL, felix_config={keys.FELIX_CONFIG + "FailsafeInboundHostPorts": "ssh"}).failsafes("host2", "in")
    loaded = policy.load({**config, keys.host_config("host2", "IpInIpTunnelAddr"): "10.10.0.1"})
    assert loaded.felix_config == config


SIZES = {"ci": {"hosts": 3, "least": 2, "workloads": 12, "examples": 4},
         "scale": {"hosts": 10, "least": 50, "workloads": 100, "examples": 10}}  # hypothesis favours short lists
SIZE = SIZES[os.environ.get("CALISIM_HYPOTHESIS_PROFILE", "ci")]
PROTOCOLS = ("icmp", "tcp", "udp")
VERSIONS = (4, 6)
POOLS = ("10.10.0.0/16", "fd80:24e2:f998:72d6::/64")  # the IPIP pool made below, the default IPv6 pool
CONVERGE_SECONDS = 30


@dataclass(frozen=True)
class Scenario:
    networks: int
    workloads: tuple[tuple[int, int], ...]  # (host index, network index) per workload
    extras: tuple[tuple, ...]  # extra rules, see extra_rules()


def extra_rules(networks: int):
    net = st.integers(0, networks - 1)
    protocol = st.sampled_from(PROTOCOLS)
    return st.one_of(
        st.tuples(st.just("allow-tag"), net, net),              # network a lets network b in
        st.tuples(st.just("allow-port"), net, st.sampled_from([("tcp", 80), ("udp", 69), ("tcp", 81)])),
        st.tuples(st.just("allow-net"), net),                   # a lets the whole pool in
        st.tuples(st.just("deny-first"), net, protocol),        # a denies a protocol before its allows
        st.tuples(st.just("policy"), net, net, protocol),       # a policy: a denies protocol from b's selector
    )


@st.composite
def scenarios(draw):
    networks = draw(st.integers(2, 5))
    workloads = draw(st.lists(st.tuples(st.integers(0, SIZE["hosts"] - 1), st.integers(0, networks - 1)),
                              min_size=SIZE["least"], max_size=SIZE["workloads"]))
    extras = draw(st.lists(extra_rules(networks), max_size=3))
    return Scenario(networks, tuple(workloads), tuple(extras))


def documents(scenario: Scenario) -> list[dict]:
    """The profiles (libnetwork's, labelled, plus the extras) and policies of a scenario."""
    profiles = {i: {"apiVersion": "v1", "kind": "profile",
                    "metadata": {"name": f"n{i}", "tags": [f"n{i}"], "labels": {"net": f"n{i}"}},
                    "spec": {"ingress": [{"action": "allow", "source": {"tag": f"n{i}"}}], "egress": [{"action": "allow"}]}}
                for i in range(scenario.networks)}
    policies = []
    for index, extra in enumerate(scenario.extras):
        kind, target = extra[0], extra[1]
        ingress = profiles[target]["spec"]["ingress"]
        if kind == "allow-tag":
            ingress.append({"action": "allow", "source": {"tag": f"n{extra[2]}"}})
        elif kind == "allow-port":
            ingress.append({"action": "allow", "protocol": extra[2][0], "destination": {"ports": [extra[2][1]]}})
        elif kind == "allow-net":
            ingress.append({"action": "allow", "source": {"net": "10.10.0.0/16"}})
        elif kind == "deny-first":
            ingress.insert(0, {"action": "deny", "protocol": extra[2]})
        else:
            policies.append({"apiVersion": "v1", "kind": "policy", "metadata": {"name": f"p{index}"},
                             "spec": {"order": index, "selector": f"net == 'n{target}'",
                                      "ingress": [{"action": "deny", "protocol": extra[3],
                                                   "source": {"selector": f"net == 'n{extra[2]}'"}},
                                                  {"action": "next-tier"}],
                                      "egress": [{"action": "next-tier"}]}})
    return list(profiles.values()) + policies


def model_of(scenario: Scenario, placed: dict[str, dict]) -> policy.Model:
    """The reference model, built from the scenario's own documents (not read back from etcd)."""
    resources = parse_documents(documents(scenario))
    profiles = {r.profile_name: policy.Profile(r.profile_name, r.tags, r.ingress, r.egress, r.labels)
                for r in resources if isinstance(r, ProfileResource)}
    policies = tuple(policy.Policy(r.policy_name, r.selector, r.order, r.ingress, r.egress)
                     for r in resources if isinstance(r, PolicyResource))
    endpoints = tuple(policy.Endpoint(w["host"], name, (w["ip"], w["ip6"]), (w["network"],)) for name, w in placed.items())
    return policy.Model(endpoints, profiles, (), POOLS, policies)


@pytest.fixture(scope="module")
def cluster():
    with Cluster(topologies.load("flat", SIZE["hosts"])) as live:
        live.start_nodes(options="--ip6 autodetect")
        live.wait_for_mesh(60)
        must(live.run("host1", "echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, "
                               "spec: {ipip: {enabled: true}}}' | calicoctl create -f - && calicoctl delete ipPool 192.168.0.0/16"))
        yield live


def must(result):
    if result.rc != 0:
        raise ClusterError(f"{result.host}$ {result.command}: {result.stdout}{result.stderr}")
    return result.stdout


def reset(cluster: Cluster) -> None:
    """No workloads, networks or policies left from the previous example."""
    for result in cluster.run_everywhere("docker ps -aq | xargs -r docker rm -f"):
        must(result)
    must(cluster.run("host1", "docker network ls --format '{{.Name}} {{.Driver}}' | awk '$2 == \"calico\" {print $1}' "
                              "| xargs -r docker network rm && calicoctl get policy | tail -n +2 "
                              "| xargs -r -n 1 calicoctl delete policy"))


def place(cluster: Cluster, scenario: Scenario) -> dict[str, dict]:
    """Networks and workloads of the scenario; name -> host, network, ip, pid."""
    for i in range(scenario.networks):
        must(cluster.run("host1", f"docker network create --ipv6 --driver calico --ipam-driver calico-ipam n{i}"))
    by_host: dict[str, list[str]] = {}
    for index, (host, network) in enumerate(scenario.workloads):
        by_host.setdefault(cluster.hosts[host], []).append(f"docker run --net n{network} --name w{index} -d workload")

    def start(host: str) -> str:
        must(cluster.run(host, " && ".join(by_host[host])))
        return must(cluster.run(host, "docker inspect -f '{{.Name}} {{.State.Pid}} "
                                      "{{range $n, $e := .NetworkSettings.Networks}}{{$n}} {{$e.IPAddress}} "
                                      "{{$e.GlobalIPv6Address}}{{end}}' "
                                      "$(docker ps -q)"))

    placed = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for host, listing in zip(by_host, pool.map(start, by_host)):
            for line in listing.split("\n"):
                if line.strip():
                    name, pid, network, ip, ip6 = line.split()
                    placed[name.lstrip("/")] = {"host": host, "pid": int(pid), "network": network, "ip": ip, "ip6": ip6}
    return placed


def measure(placed: dict[str, dict], pairs: list[tuple[str, str, str, int]]) -> dict[tuple[str, str, str, int], bool]:
    """These (source, destination, protocol, IP version) probes, each source probing all of its at once."""
    by_source: dict[str, list[tuple[str, str, str, int]]] = {}
    for pair in pairs:
        by_source.setdefault(pair[0], []).append(pair)

    def from_source(source: str) -> dict:
        mine = by_source[source]
        answered = matrix_from(placed[source]["pid"], [(protocol, placed[d]["ip" if version == 4 else "ip6"])
                                                       for _, d, protocol, version in mine])
        return dict(zip(mine, answered))

    measured: dict = {}
    with ThreadPoolExecutor(max_workers=16) as pool:
        for part in pool.map(from_source, by_source):
            measured.update(part)
    return measured


# No shrinking: every step of it would rebuild workloads on the live cluster for minutes; the
# failure message names the pair, the model's reasoning and the hosts' rules instead.
@pytest.mark.emulation
@settings(max_examples=SIZE["examples"], deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(scenario=scenarios())
def test_measured_reachability_equals_the_model(cluster, scenario):
    import time

    reset(cluster)
    placed = place(cluster, scenario)
    example = cluster.run_dir.path / "policy-example.json"  # the hosts share the filesystem
    example.write_text(json.dumps(documents(scenario)))
    must(cluster.run("host1", f"calicoctl apply -f {example}"))
    model = model_of(scenario, placed)
    endpoints = {e.interface: e for e in model.endpoints}
    expected = {(s, d, p, v): allowed(model, Packet(endpoints[s], endpoints[d], p, v))
                for s in placed for d in placed if s != d for p in PROTOCOLS for v in VERSIONS}
    event(f"{sum(expected.values())} of {len(expected)} (pair, protocol, version) allowed")  # --hypothesis-show-statistics
    # Policy reaches every host within a bounded time, and on a busy machine a probe can time out:
    # probe the pairs that differ again until they agree or the time is up (counted from the end of
    # the full measurement, which alone takes longer than that with 100 workloads on 2 cores).
    measured = measure(placed, list(expected))
    deadline = time.monotonic() + CONVERGE_SECONDS
    while (wrong := sorted(p for p in expected if measured[p] != expected[p])) and time.monotonic() < deadline:
        measured.update(measure(placed, wrong))
    if wrong:
        source, destination, protocol, version = wrong[0]
        hosts = {placed[source]["host"], placed[destination]["host"]}
        rules = "\n".join(f"--- {h}: /var/run/calico/policy.nft\n"
                          + (cluster.host(h).state_dir / "run" / "policy.nft").read_text() for h in sorted(hosts))
        packet = Packet(endpoints[source], endpoints[destination], protocol, version)
        pytest.fail(f"{len(wrong)} of {len(expected)} differ from the model, e.g. {source} ({packet.addresses[0]}, "
                    f"{placed[source]['network']}) -> {destination} ({packet.addresses[1]}, "
                    f"{placed[destination]['network']}) over {protocol}/IPv{version}: measured {measured[wrong[0]]}, "
                    f"model {expected[wrong[0]]}\nall: {wrong[:20]}\nmodel: {explain(model, packet)}\n"
                    f"documents: {yaml.safe_dump(documents(scenario))}\n{rules}", pytrace=False)
