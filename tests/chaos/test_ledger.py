"""The datastore's side of chaos's invariants, on values as IPAM and the plugin store them."""

from calisim.chaos import ledger
from calisim.datastore import keys

from tests.chaos.conftest import Store, block, store


def test_a_consistent_datastore_has_no_findings():
    ds = store(block("10.30.0.0/26", "host1", ["tunnel-host1", "w1"]), block("10.30.0.64/26", "host2", ["w2"]),
               affinities=[("host1", "10.30.0.0/26"), ("host2", "10.30.0.64/26")],
               endpoints=[("host1", "w1", "10.30.0.1"), ("host2", "w2", "10.30.0.64")])
    book = ledger.read(ds)
    assert book.findings() == []
    assert book.workload_addresses() == ["10.30.0.1", "10.30.0.64"]  # the tunnel's is not a workload's


def test_an_address_twice_an_orphaned_affinity_and_an_endpoint_ipam_does_not_hold_are_found():
    twice = block("10.30.0.0/26", "host1", ["w1"])
    again = block("10.30.0.0/26", "host1", ["w9"])  # the same block stored under a second key
    values = store(twice, affinities=[("host2", "10.30.0.0/26"), ("host3", "10.30.1.0/26")],
                   endpoints=[("host2", "w2", "10.30.0.7")]).values
    values[keys.BLOCKS + "10.30.0.0-26-copy"] = again.to_value()
    found = ledger.read(Store(values)).findings()
    assert "10.30.0.0 allocated 2 times" in found
    assert "block 10.30.0.0/26 is affine to host1 but host1 has no affinity key for it" in found
    assert "host2's affinity key names block 10.30.0.0/26, affine to host1" in found
    assert "endpoint host2/w2 has 10.30.0.7, which IPAM has not allocated" in found
    assert not any("10.30.1.0/26" in finding for finding in found)  # a claim in flight: no block yet
