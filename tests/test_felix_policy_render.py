"""The policy renderer and the reference model, without a cluster: what nft receives for the
seed's profiles, and that the model and nft's own parser agree with the rendering."""

import subprocess

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
