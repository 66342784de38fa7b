"""IPAM properties on a real etcd: the implementation and a pure model, side by side, agree
after every step; many hosts allocating at once never get the same address."""

import asyncio
import ipaddress
import random

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from calisim.datastore import keys
from calisim.datastore import Datastore, Synchronous, local_etcd
from calisim.datastore.keys import BLOCKS, blocks_prefix
from calisim.ipam import IPAM, Block, IPAMError
from calisim.datastore.resources import IPPool, ValidationError, check_pool_overlaps
from calisim.testing import strategies
from calisim.testing.ipam_model import IPAMModel

from .conftest import SCALE

pytestmark = pytest.mark.emulation
HOSTS = 50 if SCALE else 4


@pytest.fixture(scope="module")
def etcd_endpoint(tmp_path_factory):
    with local_etcd(tmp_path_factory.mktemp("etcd")) as endpoint:
        yield endpoint


class IPAMAgainstModel(RuleBasedStateMachine):
    endpoint = ""
    held = Bundle("held")

    def __init__(self):
        super().__init__()
        self.ds = Synchronous(Datastore(self.endpoint))
        self.ds.delete_prefix("/calico/")
        self.ipam = self.ds.wrap(IPAM(self.ds.target))
        self.model = IPAMModel()
        self.holding: set[ipaddress.IPv4Address] = set()

    def teardown(self):
        self.ds.close()

    @rule(cidr=st.one_of(strategies.pool_cidrs(), strategies.pool_cidrs(strategies.POOL_SPACE_V6)))
    def create_pool(self, cidr):
        pool = IPPool(cidr)
        try:
            check_pool_overlaps([pool], [IPPool(c) for c in self.model.pools])
            accepted = cidr not in self.model.pools  # creating an existing pool is refused too
        except ValidationError:
            accepted = False
        assert accepted == self.model.create_pool(cidr)
        if accepted:
            self.ds.put(pool.primary_key, pool.to_value())

    @rule(data=st.data())
    def delete_pool(self, data):
        if self.model.pools:
            cidr = data.draw(st.sampled_from(sorted(self.model.pools, key=str)))
            self.ipam.delete_pool(cidr)
            self.model.delete_pool(cidr)

    @rule(target=held, host=strategies.host_names(HOSTS), count=st.integers(1, 8), version=st.sampled_from([4, 6]))
    def auto_assign(self, host, count, version):
        enabled = self.model.enabled_pools(version)
        got = self.ipam.auto_assign(host, count, version=version)
        assert got == self.model.auto_assign(host, count, version)
        assert not set(got) & self.holding, "an address was handed out twice"
        assert all(any(a in pool for pool in enabled) for a in got), "allocated outside the enabled pools"
        self.holding.update(got)
        return got[0] if got else ipaddress.ip_address("10.255.255.255")

    @rule(target=held, host=strategies.host_names(HOSTS),
          address=st.one_of(strategies.addresses_in(), strategies.addresses_in(strategies.POOL_SPACE_V6)))
    def assign_ip(self, host, address):
        expected = self.model.assign(host, address)
        try:
            self.ipam.assign_ip(address, host)
            outcome = None
        except IPAMError as error:
            outcome = str(error)
        assert outcome == expected
        if outcome is None:
            self.holding.add(address)
        return address

    @rule(address=consumes(held))
    def release(self, address):
        was_held = address in self.holding
        assert (self.ipam.release_ips([address]) == []) == self.model.release(address) == was_held
        self.holding.discard(address)

    @rule(address=held)
    def release_twice(self, address):
        self.release(address)
        assert self.ipam.release_ips([address]) == [address]

    @invariant()
    def datastore_equals_model(self):
        stored = {Block.from_value(e.value).cidr: Block.from_value(e.value)
                  for version in (4, 6) for e in self.ds.list(blocks_prefix(version))}
        note(f"blocks: {sorted(map(str, stored))}")
        assert set(stored) == set(self.model.blocks)
        for cidr, block in stored.items():
            expected = self.model.blocks[cidr]
            assert block.host == expected.host
            assert block.unallocated == expected.free, f"free queue of {cidr}"
            assert not (block.empty and block.affinity is None), f"empty unowned block {cidr} was kept"
        allocated = {b.ip(o) for b in stored.values() for o, a in enumerate(b.allocations) if a is not None}
        assert allocated == self.holding == self.model.allocated()

    @invariant()
    def one_affine_host_per_block(self):
        owners: dict[str, list[str]] = {}
        for entry in self.ds.list("/calico/ipam/v2/host/"):
            owners.setdefault(keys.last_segment(entry.key), []).append(keys.host_of(entry.key, "/calico/ipam/v2/host/"))
        for block_name, hosts in owners.items():
            assert len(hosts) == 1, f"{block_name} is affine to {hosts}"
            block = self.ds.get(blocks_prefix(ipaddress.ip_network(keys.key_to_cidr(block_name)).version) + block_name)
            assert block is not None and block.value["affinity"] == f"host:{hosts[0]}"


def test_ipam_matches_the_model(etcd_endpoint):
    IPAMAgainstModel.endpoint = etcd_endpoint
    IPAMAgainstModel.TestCase.settings = settings(settings.default)
    IPAMAgainstModel.TestCase().runTest()


async def host_worker(endpoint: str, host: str, operations: list[tuple], seed: int) -> set:
    """One host with its own etcd client: allocate and release as told; returns what it holds."""
    ds = Datastore(endpoint)
    ipam = IPAM(ds)
    held: list = []
    rng = random.Random(seed)
    try:
        for operation in operations:
            if operation[0] == "assign":
                got = await ipam.auto_assign(host, operation[2], handle=f"{host}-{len(held)}")
                held += got
            elif held:
                address = held.pop(operation[1] % len(held))
                assert await ipam.release_ips([address]) == []
            await asyncio.sleep(rng.uniform(0, 0.002))
    finally:
        await ds.close()
    return set(held)


@settings(max_examples=5 if not SCALE else 20)
@given(hosts=st.integers(2, 8 if not SCALE else 50), operations=strategies.operation_sequences(length=12),
       pool=st.sampled_from(["10.10.0.0/24", "10.10.0.0/22"]))
def test_concurrent_hosts_never_share_an_address(etcd_endpoint, hosts, operations, pool):
    with Synchronous(Datastore(etcd_endpoint)) as ds:
        ds.delete_prefix("/calico/")
        cidr = IPPool(ipaddress.ip_network(pool))
        ds.put(cidr.primary_key, cidr.to_value())

        async def everyone():
            return await asyncio.gather(*(host_worker(etcd_endpoint, f"host{i}", operations, i) for i in range(hosts)))
        holdings = asyncio.run(everyone())
        union = [address for held in holdings for address in held]
        assert len(union) == len(set(union)), "two hosts hold the same address"
        stored = {Block.from_value(e.value).ip(o) for e in ds.list(BLOCKS)
                  for o, a in enumerate(Block.from_value(e.value).allocations) if a is not None}
        assert stored == set(union)
