"""The policy renderer and the reference model, without a cluster: what nft receives for the
seed's profiles, and that the model and nft's own parser agree with the rendering."""

import subprocess
import sys

import pytest

from calisim.felix import policy
from calisim.felix.policy import Endpoint, Model, Policy, PolicyError, Profile
from calisim.testing.policy_model import Packet, allowed

NET1 = Profile("net1", ("net1",), ({"action": "allow", "src_tag": "net1"},), ({"action": "allow"},), (("net", "one"),))
NET2 = Profile("net2", ("net2",), ({"action": "allow", "src_tag": "net2"},), ({"action": "allow"},), (("net", "two"),))
A = Endpoint("host1", "caliaaaaaaaaaaa", ("10.10.0.1",), ("net1",))
B = Endpoint("host1", "calibbbbbbbbbbb", ("10.10.0.2",), ("net2",))
E = Endpoint("host2", "calieeeeeeeeeee", ("10.10.0.65",), ("net1",))
SEED = Model((A, B, E), {"net1": NET1, "net2": NET2}, ("10.10.0.0/16",), ("10.10.0.0/16",))


def test_the_seed_renders_endpoint_chains_tag_sets_and_nat():
    text = policy.render(SEED, "host1")
    tag_net1 = policy.set_name("tag", "net1")
    assert f"elements = {{ 10.10.0.1, 10.10.0.65 }}" in text  # tags span hosts
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
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["table", "ip", "calico", "table", "ip6", "calico", "table", "ip", "calico"]
