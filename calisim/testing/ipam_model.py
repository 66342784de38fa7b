"""A pure, in-memory statement of Calico's IPAM semantics (libcalico-go v1.0's).

It is written independently of ``calisim.ipam`` (only the spec-given choices are shared: the
block size and where a host starts looking for a free block), so a property test can run both
side by side and demand the same answers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from calisim.ipam import BLOCK_PREFIXES, BLOCK_SIZE, block_of, blocks_in, first_block_index, nth_block
from calisim.datastore.keys import cidr_to_key


@dataclass
class ModelBlock:
    host: str | None
    free: list[int] = field(default_factory=lambda: list(range(BLOCK_SIZE)))
    used: set[int] = field(default_factory=set)


class IPAMModel:
    def __init__(self, strict_affinity: bool = False):
        self.pools: dict[ipaddress.IPv4Network, bool] = {}  # cidr -> enabled
        self.blocks: dict[ipaddress.IPv4Network, ModelBlock] = {}
        self.strict_affinity = strict_affinity

    def enabled_pools(self, version: int | None = None) -> list[ipaddress.IPv4Network]:
        """Enabled pools (of one IP version, or all), in the order etcd lists them."""
        return sorted((c for c, enabled in self.pools.items() if enabled and version in (None, c.version)),
                      key=cidr_to_key)

    def create_pool(self, cidr: ipaddress.IPv4Network) -> bool:
        """False (nothing changes) if it overlaps an existing pool or is smaller than a block."""
        if cidr.prefixlen > BLOCK_PREFIXES[cidr.version] or any(cidr.overlaps(other) for other in self.pools):
            return False
        self.pools[cidr] = True
        return True

    def delete_pool(self, cidr: ipaddress.IPv4Network) -> None:
        for block_cidr, block in list(self.blocks.items()):
            if block_cidr.version == cidr.version and block_cidr.subnet_of(cidr) and block.host is not None:
                self._drop_affinity(block_cidr)
        del self.pools[cidr]

    def _drop_affinity(self, cidr: ipaddress.IPv4Network) -> None:
        self.blocks[cidr].host = None
        if not self.blocks[cidr].used:
            del self.blocks[cidr]

    def _take(self, cidr: ipaddress.IPv4Network, count: int) -> list[ipaddress.IPv4Address]:
        block = self.blocks[cidr]
        taken, block.free = block.free[:count], block.free[count:]
        block.used.update(taken)
        return [cidr.network_address + ordinal for ordinal in taken]

    def _blocks(self, version: int) -> list[ipaddress.IPv4Network]:
        return sorted(c for c in self.blocks if c.version == version)

    def auto_assign(self, host: str, count: int, version: int = 4) -> list[ipaddress.IPv4Address]:
        pools = self.enabled_pools(version)
        inside = [lambda cidr, p=p: cidr.subnet_of(p) for p in pools]
        found: list[ipaddress.IPv4Address] = []
        for cidr in (c for c in self._blocks(version) if self.blocks[c].host == host and any(f(c) for f in inside)):
            found += self._take(cidr, count - len(found))
        for pool in pools:
            while len(found) < count:
                unclaimed = [nth_block(pool, (first_block_index(host, pool) + step) % blocks_in(pool))
                             for step in range(blocks_in(pool))]
                unclaimed = [cidr for cidr in unclaimed if cidr not in self.blocks]
                if not unclaimed:
                    break
                self.blocks[unclaimed[0]] = ModelBlock(host)
                found += self._take(unclaimed[0], count - len(found))
        if not self.strict_affinity:
            for cidr in self._blocks(version):
                if len(found) < count and any(f(cidr) for f in inside):
                    found += self._take(cidr, count - len(found))
        return found

    def assign(self, host: str, ip: ipaddress.IPv4Address) -> str | None:
        """None on success, else Calico's error message."""
        if not any(ip in pool for pool in self.enabled_pools(ip.version)):
            return "The provided IP address is not in a configured pool"
        cidr = block_of(ip)
        block = self.blocks.setdefault(cidr, ModelBlock(host))
        ordinal = int(ip) - int(cidr.network_address)
        if ordinal in block.used:
            return "Address already assigned in block"
        block.free.remove(ordinal)
        block.used.add(ordinal)
        return None

    def release(self, ip: ipaddress.IPv4Address) -> bool:
        """True if ip was assigned (and is now free)."""
        cidr = block_of(ip)
        block = self.blocks.get(cidr)
        ordinal = int(ip) - int(cidr.network_address)
        if block is None or ordinal not in block.used:
            return False
        block.used.remove(ordinal)
        block.free.append(ordinal)
        if not block.used and block.host is None:
            del self.blocks[cidr]
        return True

    def allocated(self) -> set[ipaddress.IPv4Address]:
        return {cidr.network_address + o for cidr, block in self.blocks.items() for o in block.used}
