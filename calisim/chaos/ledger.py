"""The datastore's side of the invariants: what IPAM has handed out, read at one moment, and what
is inconsistent in it (an address twice, a block's affinity without its host's key or the other
way round, a workload endpoint whose address IPAM does not hold).  Every value is decoded by its
resource (calisim.datastore.resources)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..datastore import keys
from ..datastore.resources.endpoints import WorkloadEndpoint
from ..datastore.resources.ipam import AllocationBlock

TUNNEL_HANDLE = "tunnel-"  # the tunnel addresses' handles: not a workload's


@dataclass
class Ledger:
    """IPAM's allocations (address -> handle), blocks' affinities and the workload endpoints."""

    allocated: list[tuple[str, str]] = field(default_factory=list)  # (address, handle): twice = twice
    affinities: dict[str, str | None] = field(default_factory=dict)  # block -> affine host (from the block)
    affinity_keys: set[tuple[str, str]] = field(default_factory=set)  # (host, block) from /calico/ipam/v2/host/
    endpoints: dict[str, list[str]] = field(default_factory=dict)  # host/workload -> its addresses

    def workload_addresses(self) -> list[str]:
        return sorted(address for address, handle in self.allocated if not handle.startswith(TUNNEL_HANDLE))

    def findings(self) -> list[str]:
        """What is inconsistent now (a write in flight may show here once; the caller decides)."""
        found = [f"{address} allocated {count} times" for address, count in
                 Counter(address for address, _ in self.allocated).items() if count > 1]
        for block, host in sorted(self.affinities.items()):
            if host and (host, block) not in self.affinity_keys:
                found.append(f"block {block} is affine to {host} but {host} has no affinity key for it")
        for host, block in sorted(self.affinity_keys):
            if self.affinities.get(block, host) != host:
                found.append(f"{host}'s affinity key names block {block}, affine to {self.affinities[block]}")
        held = {address for address, _ in self.allocated}
        for workload, addresses in sorted(self.endpoints.items()):
            missing = [address for address in addresses if address not in held]
            if missing:
                found.append(f"endpoint {workload} has {', '.join(missing)}, which IPAM has not allocated")
        return found


def read(ds) -> Ledger:
    """The ledger from a blocking datastore client (calisim.datastore.Synchronous)."""
    ledger = Ledger()
    for entry in ds.list(keys.BLOCKS):
        block = AllocationBlock.from_value(entry.value)
        ledger.affinities[str(block.cidr)] = block.host
        for ordinal, index in enumerate(block.allocations):
            if index is not None:
                handle = (block.attributes[index] if index < len(block.attributes) else {}).get("handle_id") or ""
                ledger.allocated.append((str(block.ip(ordinal)), handle))
    for entry in ds.list(keys.IPAM_HOSTS):
        host, *_, cidr = entry.key[len(keys.IPAM_HOSTS):].split("/")
        if "/ipv4/block/" in entry.key:
            ledger.affinity_keys.add((host, keys.key_to_cidr(cidr)))
    endpoints = WorkloadEndpoint.from_entries({entry.key: entry.value for entry in ds.list(keys.HOSTS)})
    for endpoint in endpoints:
        ledger.endpoints[f"{endpoint.node}/{endpoint.workload}"] = [str(ip) for ip in endpoint.addresses
                                                                    if ip.version == 4]
    return ledger
