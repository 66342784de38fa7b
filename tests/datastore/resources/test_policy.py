"""Profiles and policies: stored in Felix's form, byte for byte, and back."""

from hypothesis import given, strategies as st

from calisim.datastore import keys
from calisim.datastore.etcd import decode, encode
from calisim.datastore.resources import Policy, Profile

RULES = st.lists(st.sampled_from([{"action": "allow"}, {"action": "deny", "protocol": "tcp", "dst_ports": [80]},
                                  {"action": "allow", "src_tag": "net1"},
                                  {"action": "allow", "!src_net": "10.0.0.0/8"}]), max_size=3).map(tuple)
TAGS = st.lists(st.sampled_from(["t1", "t2"])).map(tuple)
LABELS = st.dictionaries(st.sampled_from(["role", "env"]), st.just("x")).map(lambda d: tuple(sorted(d.items())))


def test_the_network_profile_is_stored_as_calico_v1s():
    profile = Profile("net1", ("net1",), (), ({"action": "allow", "src_tag": "net1"},), ({"action": "allow"},))
    assert {k: encode(v) for k, v in profile.writes().items()} == {
        "/calico/v1/policy/profile/net1/tags": b'["net1"]',
        "/calico/v1/policy/profile/net1/labels": b"{}",
        "/calico/v1/policy/profile/net1/rules":
            b'{"inbound_rules":[{"action":"allow","src_tag":"net1"}],"outbound_rules":[{"action":"allow"}]}'}


@given(st.lists(st.builds(Profile, st.sampled_from(["net1", "net2", "a.b"]), TAGS, LABELS, RULES, RULES),
                max_size=3, unique_by=lambda p: p.profile_name))
def test_profiles_round_trip(profiles):
    entries = {k: decode(encode(v)) for p in profiles for k, v in p.writes().items()}
    entries[keys.GLOBAL_AS] = "64512"
    assert Profile.from_entries(entries) == sorted(profiles, key=lambda p: p.profile_name)


policies = st.builds(Policy, st.sampled_from(["allow-db", "deny-all", "p3"]),
                     st.sampled_from(["", "role == 'db'", "all()"]),
                     st.none() | st.integers(-1000, 1000) | st.floats(0, 1e7, allow_nan=False), RULES, RULES)


@given(st.lists(policies, max_size=3, unique_by=lambda p: p.policy_name))
def test_policies_round_trip(found):
    entries = {p.primary_key: decode(encode(p.to_value())) for p in found}
    assert Policy.from_entries(entries) == sorted(found, key=lambda p: p.policy_name)


def test_policy_values_are_felixs():
    policy = Policy("allow-db", "role == 'db'", 100, ({"action": "allow"},))
    assert policy.primary_key == "/calico/v1/policy/tier/default/policy/allow-db"
    assert encode(policy.to_value()) == (b'{"inbound_rules":[{"action":"allow"}],"order":100,"outbound_rules":[],'
                                         b'"selector":"role == \'db\'"}')
