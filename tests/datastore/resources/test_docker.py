"""Docker's cluster-store records, as dockerd stores them, and back."""

from hypothesis import given, strategies as st

from calisim.datastore import keys
from calisim.datastore.etcd import decode, encode
from calisim.datastore.resources.docker import Endpoint, Network

ids = st.text("0123456789abcdef", min_size=64, max_size=64)
networks = st.builds(Network, ids, st.sampled_from(["net1", "my_net"]), st.just("calico"), st.just("calico-ipam"),
                     st.sampled_from(["CalicoPoolIPv4", "10.10.0.0/16"]),
                     st.sampled_from(["0.0.0.0/0", "10.10.0.0/16"]),
                     st.just("0.0.0.0/0"), st.just("2026-12-07T08:00:00Z"), st.just(""),
                     st.dictionaries(st.just("opt"), st.just("v")), st.dictionaries(st.just("label"), st.just("v")),
                     st.dictionaries(st.just("aux"), st.just("10.10.0.9/16")),
                     st.sampled_from(["", "CalicoPoolIPv6"]), st.sampled_from(["", "::/0"]))
endpoints = st.builds(Endpoint, ids, ids, st.sampled_from(["workload-A", "web.v2"]), st.just("10.10.0.1/32"),
                      st.just("ee:ee:ee:ee:ee:ee"), st.integers(1, 4194304), st.sampled_from(["", "fd00::1/128"]),
                      st.sampled_from([(), ("web", "0123456789ab")]))


@given(networks, endpoints)
def test_records_round_trip_under_their_keys(network, endpoint):
    assert network.key == keys.docker_network(network.id)
    assert endpoint.key.startswith(keys.docker_endpoints(endpoint.network_id))
    entries = {network.key: decode(encode(network.to_value())), endpoint.key: decode(encode(endpoint.to_value())),
               keys.GLOBAL_AS: "64512"}
    assert Network.from_entries(entries) == [network] and Endpoint.from_entries(entries) == [endpoint]


def test_an_endpoint_is_stored_as_its_fields():
    endpoint = Endpoint("e" * 64, "n" * 64, "workload-A", "10.0.0.1/32", "ee:ee:ee:ee:ee:ee", 100)
    assert encode(endpoint.to_value()) == (
        b'{"address":"10.0.0.1/32","address6":"","aliases":[],"container":"workload-A","id":"' + b"e" * 64 +
        b'","mac":"ee:ee:ee:ee:ee:ee","network_id":"' + b"n" * 64 + b'","sandbox_pid":100}')
    assert endpoint.addresses == ["10.0.0.1"] and endpoint.names == ["workload-A"]
    stored_before_aliases = {key: value for key, value in endpoint.to_value().items() if key != "aliases"}
    assert Endpoint.from_value(stored_before_aliases) == endpoint
