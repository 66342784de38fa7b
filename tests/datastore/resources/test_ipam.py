"""IPAM's stored values: allocation blocks, handles and the IPAM config, byte for byte as libcalico-go's."""

import ipaddress

from hypothesis import given, strategies as st

from calisim.datastore.etcd import decode, encode
from calisim.datastore.resources.ipam import (BLOCK_SIZE, AllocationBlock, IPAMConfig, handle_from_value,
                                              handle_to_value)


def test_a_new_block_is_stored_as_libcalico_gos():
    block = AllocationBlock.new(ipaddress.ip_network("10.10.0.0/26"), "host1")
    value = decode(encode(block.to_value()))
    assert value == {"cidr": "10.10.0.0/26", "affinity": "host:host1", "allocations": [None] * BLOCK_SIZE,
                     "unallocated": list(range(BLOCK_SIZE)), "attributes": []}
    assert AllocationBlock.from_value(value) == block and block.host == "host1" == AllocationBlock.host_of(value)
    assert AllocationBlock.host_of({"affinity": None}) is None


@given(st.sampled_from(["10.10.0.64/26", "fd00::40/122"]), st.none() | st.sampled_from(["host1", "host2"]),
       st.sets(st.integers(0, BLOCK_SIZE - 1)))
def test_blocks_round_trip(cidr, host, taken):
    block = AllocationBlock.new(ipaddress.ip_network(cidr), host)
    block.attributes.append({"handle_id": "h", "secondary": None})
    for ordinal in sorted(taken):
        block.allocations[ordinal] = 0
        block.unallocated.remove(ordinal)
    assert AllocationBlock.from_value(decode(encode(block.to_value()))) == block


def test_ipam_config_and_handles():
    assert IPAMConfig.from_value(None) == IPAMConfig()
    assert encode(IPAMConfig().to_value()) == b'{"auto_allocate_blocks":true,"strict_affinity":false}'
    assert IPAMConfig.from_value({"strict_affinity": True}) == IPAMConfig(strict_affinity=True)
    assert encode(handle_to_value({"10.10.0.0/26": 2})) == b'{"block":{"10.10.0.0/26":2}}'
    assert handle_from_value(decode(b'{"block":{"10.10.0.0/26":2}}')) == {"10.10.0.0/26": 2}
    assert handle_from_value(None) == {}
