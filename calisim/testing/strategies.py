"""Hypothesis strategies for calisim's resources and IPAM operations."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from calisim.ipam import BLOCK_PREFIXES

#: Pools are drawn inside this range so that they overlap often enough to exercise rejection.
POOL_SPACE = ipaddress.ip_network("10.0.0.0/20")
POOL_SPACE_V6 = ipaddress.ip_network("fd00:10::/116")  # the same 64 blocks' worth, of /122s


def host_names(count: int = 5) -> st.SearchStrategy[str]:
    return st.sampled_from([f"host{i}" for i in range(1, count + 1)])


@st.composite
def pool_cidrs(draw, space: ipaddress.IPv4Network | ipaddress.IPv6Network = POOL_SPACE, smallest: int | None = None,
               largest: int | None = None) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A pool of /largest to /smallest (default: one to eight blocks of its IP version), aligned inside space."""
    smallest = BLOCK_PREFIXES[space.version] if smallest is None else smallest
    largest = smallest - 3 if largest is None else largest
    prefix = draw(st.integers(min_value=largest, max_value=smallest))
    slots = 2 ** (prefix - space.prefixlen)
    index = draw(st.integers(min_value=0, max_value=slots - 1))
    return ipaddress.ip_network((space.network_address + index * 2 ** (space.max_prefixlen - prefix), prefix))


def addresses_in(space: ipaddress.IPv4Network | ipaddress.IPv6Network = POOL_SPACE):
    offsets = st.integers(min_value=0, max_value=space.num_addresses - 1)
    return offsets.map(lambda offset: space.network_address + offset)


@st.composite
def operation_sequences(draw, hosts: int = 5, length: int = 40) -> list[tuple]:
    """A list of ("assign", host, count) / ("release", index) operations for concurrency tests."""
    names = host_names(hosts)
    operation = st.one_of(
        st.tuples(st.just("assign"), names, st.integers(min_value=1, max_value=8)),
        st.tuples(st.just("release"), st.integers(min_value=0, max_value=10_000)))
    return draw(st.lists(operation, min_size=1, max_size=length))
