"""IPAM semantics: the Block in memory (no root), then examples against a real etcd; then IPAM's
properties on a real etcd: the implementation and a pure model, side by side, agree after every
step; many hosts allocating at once never get the same address."""

import asyncio
import ipaddress
import random

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, multiple, rule

from calisim.datastore import Datastore, Synchronous, keys, local_etcd
from calisim.datastore.resources import IPPool, ValidationError, check_pool_overlaps
from calisim.datastore.keys import BLOCKS, blocks_prefix
from calisim.ipam import IPAM, Block, IPAMError, first_block_index
from calisim.testing import strategies
from calisim.testing.ipam_model import IPAMModel

from tests.conftest import SCALE, dump


ip = ipaddress.ip_address
net = ipaddress.ip_network


def test_block_free_ordinals_are_a_fifo_queue():
    block = Block.new(net("10.0.0.0/26"), "host1")
    assert block.allocate(2, None, None) == [ip("10.0.0.0"), ip("10.0.0.1")]
    block.release(ip("10.0.0.0"))
    assert block.unallocated[-1] == 0  # a released address goes to the back
    assert block.allocate(62, None, None)[-1] == ip("10.0.0.63")
    assert block.allocate(1, None, None) == [ip("10.0.0.0")]  # reissued only after the block cycled


def test_block_attributes_are_shared_and_dropped_when_unused():
    block = Block.new(net("10.0.0.0/26"), None)
    block.allocate(2, "h1", {"a": 1})
    block.allocate(1, "h2", None)
    assert block.attributes == [{"handle_id": "h1", "secondary": {"a": 1}}, {"handle_id": "h2", "secondary": None}]
    assert block.release(ip("10.0.0.0")) == "h1" and len(block.attributes) == 2
    block.release(ip("10.0.0.1"))
    assert block.attributes == [{"handle_id": "h2", "secondary": None}] and block.allocations[2] == 0
    with pytest.raises(KeyError):
        block.release(ip("10.0.0.1"))
    with pytest.raises(IPAMError, match="Address already assigned in block"):
        block.assign(ip("10.0.0.2"), None, None)


def test_first_block_is_a_stable_function_of_the_host_name():
    pool = net("10.10.0.0/16")
    assert first_block_index("host1", pool) == first_block_index("host1", pool)
    assert len({first_block_index(f"host{i}", pool) for i in range(20)}) > 10


@pytest.fixture
def ipam(ds):
    return ds.wrap(IPAM(ds.target))


def add_pool(ds, cidr, **options):
    pool = IPPool(net(cidr), **options)
    ds.put(pool.primary_key, pool.to_value())


@pytest.mark.emulation
def test_hosts_get_their_own_blocks_then_borrow(ds, ipam):
    add_pool(ds, "10.10.0.0/25")  # two blocks only
    first = ipam.auto_assign("host1", 3)
    block1 = net(f"{first[0]}/26", strict=False)
    assert all(a in block1 for a in first)
    assert ds.get(keys.host_affinity_blocks("host1") + keys.cidr_to_key(block1)) is not None
    second = ipam.auto_assign("host2", 1)
    assert second[0] not in block1  # host2 claims the other block
    borrowed = ipam.auto_assign("host3", 2)  # no free block left: borrowed from the others
    assert len(borrowed) == 2 and not set(borrowed) & set(first + second)
    assert ds.get(keys.block(block1)).value["affinity"] == "host:host1"


def count_requests(datastore):
    """The names of the etcd client's calls datastore makes from now on, in order."""
    requests = []
    real_call = datastore._call

    async def counted(method, *args, **kwargs):
        requests.append(method.__name__)
        return await real_call(method, *args, **kwargs)

    datastore._call = counted
    return requests


@pytest.mark.emulation
def test_an_allocation_is_one_request_and_a_new_block_one_more(ds, ipam):
    add_pool(ds, "10.10.0.0/16")
    ipam.auto_assign("host1", 1)  # the first reads what the host holds
    requests = count_requests(ds.target)
    addresses = [a for _ in range(64) for a in ipam.auto_assign("host1", 1)]
    assert requests == ["transaction"] * 63 + ["get_prefix", "transaction"]  # the 64th claims a block
    assert len(set(addresses)) == 64 and len({net(f"{a}/26", strict=False) for a in addresses}) == 2
    assert len(ds.list(keys.host_affinity_blocks("host1"))) == 2


@pytest.mark.emulation
def test_a_network_of_one_pool_allocates_in_one_request_from_that_pool(ds, ipam):
    add_pool(ds, "10.10.0.0/16")
    add_pool(ds, "10.20.0.0/16")
    wanted = [net("10.20.0.0/16")]
    ipam.auto_assign("host1", 1)  # a block of the first pool: passed over below
    ipam.auto_assign("host1", 1, wanted)
    requests = count_requests(ds.target)
    addresses = [a for _ in range(3) for a in ipam.auto_assign("host1", 1, wanted)]
    assert requests == ["transaction"] * 3 and all(a in wanted[0] for a in addresses)
    with pytest.raises(IPAMError, match="not a configured, enabled Calico IP pool"):
        ipam.auto_assign("host1", 1, [net("10.30.0.0/16")])


def at_once(ipam, host, counts, pools=None):
    """counts requests of host issued together on one client, as the plugin serves concurrent docker runs."""
    async def together(target):
        return await asyncio.gather(*(target.auto_assign(host, count, pools) for count in counts),
                                    return_exceptions=True)
    return ipam.run(together)


def one_after_another(host, counts, pools, done=0):
    """What counts requests get one after another from fresh pools, after done single allocations."""
    model = IPAMModel()
    for cidr in pools:
        model.create_pool(net(cidr))
    for _ in range(done):
        model.auto_assign(host, 1)
    return [model.auto_assign(host, count) for count in counts]


@pytest.mark.emulation
def test_a_hosts_requests_at_once_on_one_client_share_one_transaction(ds, ipam):
    """The plugin serves a host's requests at once on one IPAM: those that arrive while the host's
    turn is taken share its next transaction, each getting what it would have got in turn."""
    add_pool(ds, "10.10.0.0/16")
    ipam.auto_assign("host1", 1)
    requests = count_requests(ds.target)
    assigned = at_once(ipam, "host1", [1] * 30)
    assert assigned == one_after_another("host1", [1] * 30, ["10.10.0.0/16"], done=1)
    assert requests == ["transaction"] and ipam.conflicts == 0


@pytest.mark.emulation
def test_requests_at_once_past_a_full_block_claim_the_next_in_the_same_transaction(ds, ipam):
    add_pool(ds, "10.10.0.0/16")
    ipam.auto_assign("host1", 1)
    requests = count_requests(ds.target)
    counts = [1] * 60 + [5] + [1] * 10  # the 61st request spans the first block and the second
    assigned = at_once(ipam, "host1", counts)
    assert assigned == one_after_another("host1", counts, ["10.10.0.0/16"], done=1)
    assert requests == ["get_prefix", "transaction"] and len(ds.list(keys.host_affinity_blocks("host1"))) == 2


@pytest.mark.emulation
def test_a_request_at_once_that_more_than_a_new_block_cannot_hold_goes_the_long_way(ds, ipam):
    add_pool(ds, "10.10.0.0/16")
    ipam.auto_assign("host1", 1)
    counts = [60, 70, 1]  # 63 known free, then one new block: the 70 and the 1 need a third
    assigned = at_once(ipam, "host1", counts)
    assert assigned == one_after_another("host1", counts, ["10.10.0.0/16"], done=1)


@pytest.mark.emulation
def test_a_refused_request_at_once_fails_alone(ds, ipam):
    add_pool(ds, "10.10.0.0/16")
    wanted, missing = [net("10.10.0.0/16")], [net("10.30.0.0/16")]

    async def mixed(target):
        return await asyncio.gather(target.auto_assign("host1", 1, wanted), target.auto_assign("host1", 1, missing),
                                    target.auto_assign("host1", 1, wanted), return_exceptions=True)
    first, refused, third = ipam.run(mixed)
    assert isinstance(refused, IPAMError) and "not a configured, enabled Calico IP pool" in str(refused)
    assert [first, third] == one_after_another("host1", [1, 1], ["10.10.0.0/16"])


@pytest.mark.emulation
def test_a_request_cancelled_while_it_waits_takes_no_address(ds, ipam):
    add_pool(ds, "10.10.0.0/16")

    async def second_cancelled(target):
        requests = [asyncio.ensure_future(target.auto_assign("host1", 1)) for _ in range(3)]
        await asyncio.sleep(0)  # all three queued, their transaction not yet begun
        requests[1].cancel()
        return await asyncio.gather(*requests, return_exceptions=True)
    first, cancelled, third = ipam.run(second_cancelled)
    assert isinstance(cancelled, asyncio.CancelledError)
    assert [first, third] == one_after_another("host1", [1, 1], ["10.10.0.0/16"])
    stored = [Block.from_value(e.value) for e in ds.list(BLOCKS)]
    assert sorted(b.ip(o) for b in stored for o, a in enumerate(b.allocations) if a is not None) == first + third


@pytest.mark.emulation
def test_exhaustion_returns_what_there_is(ds, ipam):
    add_pool(ds, "10.10.0.0/26")
    assert len(ipam.auto_assign("host1", 60)) == 60
    assert len(ipam.auto_assign("host2", 10)) == 4
    assert ipam.auto_assign("host2", 1) == []


@pytest.mark.emulation
def test_assign_specific_ip_and_errors_change_nothing(ds, ipam):
    add_pool(ds, "10.10.0.0/16")
    assert ipam.assign_ip("10.10.3.7", "host1") == ip("10.10.3.7")
    before = dump(ds)
    for bad, message in (("10.10.3.7", "Address already assigned in block"),
                         ("10.99.0.1", "The provided IP address is not in a configured pool"),
                         ("10.10.3", "Invalid IP address")):
        with pytest.raises(IPAMError, match=message):
            ipam.assign_ip(bad, "host1")
        assert dump(ds) == before


@pytest.mark.emulation
def test_release_is_idempotent_and_empty_unowned_blocks_are_collected(ds, ipam):
    add_pool(ds, "10.10.0.0/16")
    (address,) = ipam.auto_assign("host1", 1, handle="wl1")
    assert ds.get(keys.handle("wl1")).value == {"block": {str(net(f"{address}/26", strict=False)): 1}}
    assert ipam.release_ips([address]) == []
    assert ipam.release_ips([address]) == [address]
    assert ds.get(keys.handle("wl1")) is None
    assert len(ds.list(BLOCKS)) == 1  # still affine to host1: kept
    ipam.release_host_affinities("host1")
    assert ds.list(BLOCKS) == [] and ds.list("/calico/ipam/v2/host/") == []


@pytest.mark.emulation
def test_release_by_handle(ds, ipam):
    add_pool(ds, "10.10.0.0/16")
    mine = ipam.auto_assign("host1", 3, handle="container-1")
    other = ipam.auto_assign("host1", 1, handle="container-2")
    assert sorted(ipam.release_by_handle("container-1")) == sorted(mine)
    assert ipam.attributes(other[0]) == {"handle_id": "container-2", "secondary": None}
    assert all(ipam.attributes(a) is None for a in mine)


@pytest.mark.emulation
def test_pool_deletion_disables_releases_affinities_and_keeps_addresses(ds, ipam):
    add_pool(ds, "10.10.0.0/16")
    add_pool(ds, "10.20.0.0/16")
    kept = ipam.auto_assign("host1", 1, [net("10.10.0.0/16")])[0]
    ipam.auto_assign("host2", 1, [net("10.10.0.0/16")])
    ipam.release_ips(ipam.auto_assign("host3", 1, [net("10.10.0.0/16")]))  # host3's block is empty
    ipam.delete_pool(net("10.10.0.0/16"))
    assert ds.get("/calico/v1/ipam/v4/pool/10.10.0.0-16") is None
    assert ds.list("/calico/ipam/v2/host/") == []
    assert {Block.from_value(e.value).affinity for e in ds.list(BLOCKS)} == {None}
    assert len(ds.list(BLOCKS)) == 2  # host3's empty block is gone, the others keep their address
    assert ipam.attributes(kept) is not None
    assert all(a in net("10.20.0.0/16") for a in ipam.auto_assign("host1", 2))


@pytest.mark.emulation
def test_tunnel_address_follows_ipip_pools(ds, ipam):
    tunnel_key = keys.host_config("host1", "IpInIpTunnelAddr")
    add_pool(ds, "192.168.0.0/16")
    assert ipam.ensure_tunnel_address("host1") is None and ds.get(tunnel_key) is None
    add_pool(ds, "10.10.0.0/16", ipip=True)
    first = ipam.ensure_tunnel_address("host1")
    assert first in net("10.10.0.0/16") and ds.get(tunnel_key).value == str(first)
    assert ipam.ensure_tunnel_address("host1") == first  # stable while its pool stays
    add_pool(ds, "10.20.0.0/16", ipip=True)
    ipam.delete_pool(net("10.10.0.0/16"))
    moved = ipam.ensure_tunnel_address("host1")
    assert moved in net("10.20.0.0/16") and ipam.attributes(first) is None
    ipam.delete_pool(net("10.20.0.0/16"))
    assert ipam.ensure_tunnel_address("host1") is None and ds.get(tunnel_key) is None
    assert ipam.attributes(moved) is None


@pytest.mark.emulation
def test_vxlan_and_ipip_tunnel_addresses_come_from_their_own_pools(ds, ipam):
    add_pool(ds, "10.10.0.0/16", ipip=True)
    assert ipam.ensure_tunnel_address("host1", "vxlan") is None
    add_pool(ds, "10.30.0.0/16", vxlan=True)
    ipip_address = ipam.ensure_tunnel_address("host1")
    vxlan_address = ipam.ensure_tunnel_address("host1", "vxlan")
    assert ipip_address in net("10.10.0.0/16") and vxlan_address in net("10.30.0.0/16")
    assert ds.get(keys.host_config("host1", "IPv4VXLANTunnelAddr")).value == str(vxlan_address)
    assert ipam.attributes(vxlan_address)["handle_id"] == "vxlan-tunnel-host1"
    ipam.delete_pool(net("10.30.0.0/16"))
    assert ipam.ensure_tunnel_address("host1", "vxlan") is None
    assert ipam.ensure_tunnel_address("host1") == ipip_address


@pytest.mark.emulation
def test_ipv6_addresses_come_in_affine_122_blocks_beside_ipv4(ds, ipam):
    add_pool(ds, "10.10.0.0/16")
    add_pool(ds, "fd80:24e2:f998:72d6::/64")
    (v4,) = ipam.auto_assign("host1", 1)
    v6 = ipam.auto_assign("host1", 2, version=6)
    assert v4.version == 4 and [a.version for a in v6] == [6, 6]
    block = net(f"{v6[0]}/122", strict=False)
    assert v6[1] in block and block.subnet_of(net("fd80:24e2:f998:72d6::/64"))
    assert ds.get(keys.block(block)).value["affinity"] == "host:host1"
    assert keys.block(block).startswith("/calico/ipam/v2/assignment/ipv6/block/")
    assert ds.get(keys.host_affinity_blocks("host1", 6) + keys.cidr_to_key(block)) is not None
    assert ipam.auto_assign("host2", 1, version=6)[0] not in block  # host2 claims a block of its own
    assert ipam.assign_ip("fd80:24e2:f998:72d6::1:5", "host1") == ip("fd80:24e2:f998:72d6::1:5")
    with pytest.raises(IPAMError, match="The provided IP address is not in a configured pool"):
        ipam.assign_ip("fd00:99::1", "host1")
    ipam.delete_pool(net("fd80:24e2:f998:72d6::/64"))
    assert ds.list(keys.host_affinity_blocks("host1", 6)) == [] and ds.list(keys.host_affinity_blocks("host1"))


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
          counts=st.lists(st.integers(1, 8), min_size=2, max_size=12), version=st.sampled_from([4, 6]))
    def auto_assign_at_once(self, host, counts, version):
        """A host's requests issued together on one client get what they would have got in turn."""
        async def together(target):
            return await asyncio.gather(*(target.auto_assign(host, count, version=version) for count in counts))
        got = self.ipam.run(together)
        assert got == [self.model.auto_assign(host, count, version) for count in counts]
        flat = [address for addresses in got for address in addresses]
        assert len(flat) == len(set(flat)) and not set(flat) & self.holding, "an address was handed out twice"
        self.holding.update(flat)
        return multiple(*flat)

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


@pytest.mark.emulation
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
            if operation[0] == "assign" and len(held) % 2:  # a handle: libcalico-go's long way
                held += await ipam.auto_assign(host, operation[2], handle=f"{host}-{len(held)}")
            elif operation[0] == "assign":  # requests at once, sharing transactions guarded by what the host read
                requests = [ipam.auto_assign(host, 1) for _ in range(operation[2])]
                held += [address for got in await asyncio.gather(*requests) for address in got]
            elif held:
                address = held.pop(operation[1] % len(held))
                assert await ipam.release_ips([address]) == []
            await asyncio.sleep(rng.uniform(0, 0.002))
    finally:
        await ds.close()
    return set(held)


@pytest.mark.emulation
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
