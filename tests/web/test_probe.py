"""A probe stream's pair, address and length are checked before anything runs: one line for the page."""

import pytest

from calisim.web.probe import MAX_SECONDS, ProbeError, Workload, choose

WORKLOADS = [{"host": "host1", "name": "w1", "address": "10.10.0.1", "addresses": ["10.10.0.1"]},
             {"host": "host2", "name": "w2", "address": "10.10.0.2", "addresses": ["10.10.0.2", "fd80::2"]}]


def test_a_pair_of_known_workloads_is_chosen_with_its_addresses():
    assert choose(WORKLOADS, "host1/w1", "host2/w2", "5") == (Workload("host1", "w1", "10.10.0.1"),
                                                              Workload("host2", "w2", "10.10.0.2"), 5)
    assert choose(WORKLOADS, "host1/w1", "host2/w2", 5, "fd80::2")[1] == Workload("host2", "w2", "fd80::2")


@pytest.mark.parametrize("source, destination, seconds, says", [
    ("host1/w9", "host2/w2", 5, "no workload 'host1/w9' with an address (known: host1/w1, host2/w2)"),
    ("host1/w1", None, 5, "no workload None"),
    ("host1/w1", "host2/w2", "ten", "seconds must be a whole number, not 'ten'"),
    ("host1/w1", "host2/w2", 0, f"seconds must be between 1 and {MAX_SECONDS}, not 0"),
    ("host1/w1", "host2/w2", MAX_SECONDS + 1, f"not {MAX_SECONDS + 1}"),
    ("host1/w1", "host2/w2@fd80::1", 5, "no workload 'host2/w2@fd80::1'"),
])
def test_bad_choices_are_refused_in_one_line(source, destination, seconds, says):
    with pytest.raises(ProbeError) as refused:
        choose(WORKLOADS, source, destination, seconds)
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_an_address_the_destination_does_not_have_is_refused():
    with pytest.raises(ProbeError) as refused:
        choose(WORKLOADS, "host1/w1", "host2/w2", 5, "10.10.0.1")
    assert str(refused.value) == "host2/w2 has no address '10.10.0.1' (it has 10.10.0.2, fd80::2)"
