"""Calico IPAM (libcalico-go v1.0 semantics) over etcd.

Addresses come in blocks of 64: /26 for IPv4, /122 for IPv6 (keys under ``ipv4/`` and ``ipv6/``).
A host uses its own (affine) blocks first, then claims a free
block (starting at a block derived from a hash of its name, then sequentially with wrap-around),
and only then borrows free addresses from other hosts' blocks.  Inside a block free ordinals are a
FIFO queue, so a released address is not reissued before the block has cycled.

Every write is one etcd transaction guarded by the revisions it read (the block, and the handle
when there is one); a conflict re-reads and retries, so hosts allocating at once in different
processes never get the same address.  While a host's blocks have room, an allocation is one
such transaction, decided from what the host last read and guarded by compares that none of it
changed (``_from_known_blocks``); a full block, one more request.  A host's requests that
arrive while its previous transaction is in flight share the next one (a group commit), each
getting what it would have got one after another.  ``IPAM`` is asyncio;
``Synchronous(IPAM(ds))`` is the blocking face for calicoctl and the plugins.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import random
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from .datastore import Datastore, Txn, keys
from .datastore.resources import IPPool
from .datastore.resources.ipam import (BLOCK_PREFIXES, BLOCK_SIZE, AllocationBlock, IPAMConfig, handle_from_value,
                                       handle_to_value)

MAX_ATTEMPTS = 200


@dataclass(frozen=True)
class Tunnel:
    """Where a host's tunnel address of one encapsulation lives (Felix's config names)."""
    param: str
    handle_prefix: str
    attribute_type: str


TUNNELS = {"ipip": Tunnel("IpInIpTunnelAddr", "tunnel-", "ipipTunnelAddress"),
           "vxlan": Tunnel("IPv4VXLANTunnelAddr", "vxlan-tunnel-", "vxlanTunnelAddress")}

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


class IPAMError(ValueError):
    """A request IPAM refuses, with Calico's message."""


class ConflictError(RuntimeError):
    """Too many concurrent writers kept winning the race for the same keys."""


def block_of(ip: IP) -> IPNet:
    return ipaddress.ip_network(f"{ip}/{BLOCK_PREFIXES[ip.version]}", strict=False)


def blocks_in(pool: IPNet) -> int:
    return 2 ** (BLOCK_PREFIXES[pool.version] - pool.prefixlen)


def nth_block(pool: IPNet, index: int) -> IPNet:
    return ipaddress.ip_network((pool.network_address + index * BLOCK_SIZE, BLOCK_PREFIXES[pool.version]))


def first_block_index(host: str, pool: IPNet) -> int:
    """Where host starts looking for a free block in pool: a stable hash of its name."""
    digest = hashlib.sha256(host.encode()).digest()
    return int.from_bytes(digest[:8], "big") % blocks_in(pool)


def unclaimed_blocks(host: str, pool: IPNet, existing: set[str]) -> Iterator[IPNet]:
    """The blocks of pool whose keys are not in existing, in the order host tries to claim them:
    from its hash start, then sequentially with wrap-around."""
    count = blocks_in(pool)
    start = first_block_index(host, pool)
    for step in range(count):
        cidr = nth_block(pool, (start + step) % count)
        if keys.block(cidr) not in existing:
            yield cidr


def parse_ip(text: Any) -> IP:
    try:
        return ipaddress.ip_address(str(text).strip())
    except ValueError:
        raise IPAMError(f"Invalid IP address: {text!r}") from None


class Block(AllocationBlock):
    """One block and how IPAM changes it: the FIFO of free ordinals, its handles' attributes."""

    def copy(self) -> "Block":
        """A copy to change while the original stays what etcd holds (attributes are never changed in place)."""
        return Block(self.cidr, self.affinity, list(self.allocations), list(self.unallocated), list(self.attributes))

    def _attribute_index(self, handle: str | None, attrs: dict | None) -> int:
        entry = {"handle_id": handle, "secondary": attrs or None}
        if entry not in self.attributes:
            self.attributes.append(entry)
        return self.attributes.index(entry)

    def allocate(self, count: int, handle: str | None, attrs: dict | None) -> list[IP]:
        """Take up to count addresses from the front of the free queue."""
        taken = self.unallocated[:count]
        del self.unallocated[:len(taken)]
        if taken:
            index = self._attribute_index(handle, attrs)
            for ordinal in taken:
                self.allocations[ordinal] = index
        return [self.ip(ordinal) for ordinal in taken]

    def assign(self, ip: IP, handle: str | None, attrs: dict | None) -> None:
        ordinal = self.ordinal(ip)
        if self.allocations[ordinal] is not None:
            raise IPAMError("Address already assigned in block")
        self.unallocated.remove(ordinal)
        self.allocations[ordinal] = self._attribute_index(handle, attrs)

    def release(self, ip: IP) -> str | None:
        """Free ip (it goes to the back of the queue); returns its handle.  KeyError if it was free."""
        ordinal = self.ordinal(ip)
        index = self.allocations[ordinal]
        if index is None:
            raise KeyError(ip)
        handle = self.attributes[index]["handle_id"]
        self.allocations[ordinal] = None
        self.unallocated.append(ordinal)
        if index not in self.allocations:  # drop the unused attribute and renumber the rest
            del self.attributes[index]
            self.allocations = [a - 1 if a is not None and a > index else a for a in self.allocations]
        return handle


@dataclass
class HostView:
    """What a host last read of its own blocks, with the revisions that prove it still holds."""

    affinities_read_at: int
    pools_read_at: int
    pools: list[IPPool]
    config: IPAMConfig
    config_revision: int
    blocks: list[tuple[Block, int]]  # the host's affine blocks in address order, with revisions


@dataclass
class Pending:
    """One auto_assign without a handle, waiting for its host's next transaction."""

    count: int
    attrs: dict | None
    taken: list[IP] = field(default_factory=list)
    result: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def satisfied(self) -> bool:
        return len(self.taken) >= self.count

    def settle(self, error: BaseException | None = None) -> None:
        """Hand the caller what it was given, or the error (unless it stopped waiting)."""
        if self.result.done():
            return
        if isinstance(error, asyncio.CancelledError):
            self.result.cancel()
        elif error is not None:
            self.result.set_exception(error)
        else:
            self.result.set_result(self.taken)


def fill(block: Block, batch: list[Pending]) -> None:
    """Take from block, for each request of batch in turn, what it still wants (as much as is free)."""
    for request in batch:
        if not request.satisfied:
            request.taken += block.allocate(request.count - len(request.taken), None, request.attrs)


class IPAM:
    """Calico's IPAM on etcd; every method is safe to run from many hosts at once."""

    def __init__(self, ds: Datastore):
        self.ds = ds
        self.conflicts = 0  # compare-and-swap losses, retried (the benchmark reports them)
        self._views: dict[str, HostView] = {}
        self._host_locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[tuple, list[Pending]] = {}  # (host, pools) -> requests waiting for its turn
        self._servers: dict[tuple, asyncio.Future] = {}  # (host, pools) -> the task serving them

    # -- reading -----------------------------------------------------------------------------
    async def pools(self, enabled_only: bool = True, version: int = 4) -> list[IPPool]:
        return [p for p in await IPPool.load_all(self.ds)
                if p.cidr.version == version and (not p.disabled or not enabled_only)]

    async def config(self) -> IPAMConfig:
        return IPAMConfig.from_value(await self.ds.value(keys.IPAM_CONFIG))

    async def block(self, cidr: IPNet) -> tuple[Block | None, int]:
        entry = await self.ds.get(keys.block(cidr))
        return (None, 0) if entry is None else (Block.from_value(entry.value), entry.revision)

    async def blocks(self, version: int = 4) -> list[Block]:
        return [Block.from_value(e.value) for e in await self.ds.list(keys.blocks_prefix(version))]

    async def affine_blocks(self, host: str, version: int = 4) -> list[IPNet]:
        return sorted(ipaddress.ip_network(keys.key_to_cidr(keys.last_segment(e.key)))
                      for e in await self.ds.list(keys.host_affinity_blocks(host, version)))

    async def _pools_for(self, pool_cidrs: list[IPNet] | None, version: int = 4) -> list[IPNet]:
        enabled = [p.cidr for p in await self.pools(version=version)]
        if pool_cidrs is None:
            return enabled
        missing = [c for c in pool_cidrs if c not in enabled]
        if missing:
            raise IPAMError(f"The requested pool {missing[0]} is not a configured, enabled Calico IP pool")
        return list(pool_cidrs)

    # -- the compare-and-swap loop -------------------------------------------------------------
    async def _retrying(self, attempt) -> Any:
        """Run attempt() until it returns something other than None (None = lost a race)."""
        for tries in range(MAX_ATTEMPTS):
            result = await attempt()
            if result is not None:
                return result
            self.conflicts += 1
            await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** min(tries, 6))))
        raise ConflictError(f"gave up after {MAX_ATTEMPTS} conflicting attempts")

    async def _write_block(self, block: Block, revision: int, handle: str | None, delta: int,
                           extra: Txn | None = None) -> bool:
        """Store block (or delete it if it must go) and adjust handle's count, all or nothing."""
        txn = extra or Txn()
        txn.require_revision(keys.block(block.cidr), revision)
        if block.empty and block.affinity is None:
            txn.delete(keys.block(block.cidr))
        else:
            txn.put(keys.block(block.cidr), block.to_value())
        if handle and delta:
            entry = await self.ds.get(keys.handle(handle))
            counts = handle_from_value(entry.value) if entry else {}
            cidr = str(block.cidr)
            counts[cidr] = counts.get(cidr, 0) + delta
            if counts[cidr] <= 0:
                del counts[cidr]
            txn.require_revision(keys.handle(handle), entry.revision if entry else 0)
            if counts:
                txn.put(keys.handle(handle), handle_to_value(counts))
            else:
                txn.delete(keys.handle(handle))
        return await self.ds.commit(txn)

    # -- assigning -----------------------------------------------------------------------------
    async def _allocate_from(self, cidr: IPNet, count: int, handle: str | None, attrs: dict | None) -> list[IP]:
        async def attempt():
            block, revision = await self.block(cidr)
            if block is None:
                return []
            taken = block.allocate(count, handle, attrs)
            if not taken:
                return []
            return taken if await self._write_block(block, revision, handle, len(taken)) else None
        return await self._retrying(attempt)

    async def _claim_block(self, host: str, pool: IPNet) -> IPNet | None:
        """Claim the first unclaimed block of pool from host's hash start; None if all are taken."""
        for cidr in unclaimed_blocks(host, pool, await self.ds.keys(keys.blocks_prefix(pool.version))):
            txn = (Txn().require_absent(keys.block(cidr)).put(keys.block(cidr), Block.new(cidr, host).to_value())
                   .put(keys.affinity(host, cidr), {}))
            if await self.ds.commit(txn):
                return cidr
            self.conflicts += 1  # another host claimed it first: keep walking
        return None

    async def _read_view(self, host: str) -> HostView:
        """Two round trips: the host's affinities, then its blocks, the pools and the config at once."""
        affinities, affinities_read_at = await self.ds.list_at(keys.host_affinity_blocks(host))
        cidrs = sorted(ipaddress.ip_network(keys.key_to_cidr(keys.last_segment(e.key))) for e in affinities)
        entries, read_at = await self.ds.read_at([keys.IPAM_CONFIG, *map(keys.block, cidrs)], [keys.POOLS_V4])
        found = {entry.key: entry for entry in entries}
        config = found.get(keys.IPAM_CONFIG)
        blocks = [(Block.from_value(found[keys.block(c)].value), found[keys.block(c)].revision)
                  for c in cidrs if keys.block(c) in found]
        pools = [IPPool.from_value(e.value) for e in entries if e.key.startswith(keys.POOLS_V4)]
        return HostView(affinities_read_at, read_at, pools, IPAMConfig.from_value(config and config.value),
                        config.revision if config else 0, blocks)

    async def _claim_known(self, host: str, view: HostView, txn: Txn, batch: list[Pending],
                           pools: list[IPNet]) -> Block | None:
        """Every known block is full and some of batch still wants addresses: claim the next
        unclaimed block and allocate from it in the same guarded transaction (one round trip more,
        to list which blocks exist, where deciding from fresh reads takes a dozen)."""
        if not view.config.auto_allocate_blocks:
            return None
        existing = await self.ds.keys(keys.blocks_prefix(4))
        candidates = (cidr for pool in pools for cidr in unclaimed_blocks(host, pool, existing))
        cidr = next(candidates, None)
        if cidr is None:
            return None
        block = Block.new(cidr, host)
        fill(block, batch)
        txn.require_absent(keys.block(cidr)).put(keys.block(cidr), block.to_value()).put(keys.affinity(host, cidr), {})
        return block

    async def _from_known_blocks(self, host: str, batch: list[Pending], pool_cidrs: list[IPNet] | None) -> None:
        """The common case in one round trip for every request of batch: each in turn takes from
        the host's affine blocks with room (in pool_cidrs, else in any enabled pool) as last read,
        in address order, then from one new block, as one request after another would; the
        transaction is guarded by compares proving that nothing the choices depend on has changed
        since (the host's affinities, the pools, the config, every block passed over).  When
        something has, or a requested pool is not an enabled one, nothing is taken: the caller
        then decides from fresh reads."""
        view = self._views.get(host) or await self._read_view(host)
        self._views[host] = view
        enabled = [pool.cidr for pool in view.pools if not pool.disabled]
        pools = enabled if pool_cidrs is None else list(pool_cidrs)
        if not set(pools) <= set(enabled):
            return
        txn = (Txn().require_unchanged_since(keys.host_affinity_blocks(host), view.affinities_read_at)
               .require_unchanged_since(keys.POOLS_V4, view.pools_read_at)
               .require_revision(keys.IPAM_CONFIG, view.config_revision))
        changed: dict[int, Block] = {}
        for index, (block, revision) in enumerate(view.blocks):
            if all(request.satisfied for request in batch):
                break
            txn.require_revision(keys.block(block.cidr), revision)
            if block.unallocated and any(block.cidr.subnet_of(pool) for pool in pools):
                changed[index] = block.copy()
                fill(changed[index], batch)
                txn.put(keys.block(block.cidr), changed[index].to_value())
        claimed = None
        if not all(request.satisfied for request in batch):
            claimed = await self._claim_known(host, view, txn, batch, pools)
        stored_at = await self.ds.commit_revision(txn) if changed or claimed else None
        if stored_at is None:
            self._views.pop(host, None)  # other requests of this host may have forgotten it already
            for request in batch:
                request.taken.clear()
            return
        for index, updated in changed.items():
            view.blocks[index] = (updated, stored_at)
        if claimed is not None:
            view.affinities_read_at = stored_at  # the compares held up to this revision, and this is our write
            view.blocks = sorted([*view.blocks, (claimed, stored_at)], key=lambda known: known[0].cidr)

    async def auto_assign(self, host: str, count: int = 1, pool_cidrs: list[IPNet] | None = None,
                          handle: str | None = None, attrs: dict | None = None, version: int = 4) -> list[IP]:
        """Up to count addresses of one IP version (that of pool_cidrs when given) for host: own
        blocks, then new blocks, then borrowed (if allowed).  A host's requests on this client
        take turns, as Calico's CNI plugin holds its host's IPAM lock: at once they would all
        read the same free address, and all but one lose the race for it and retry.  Requests
        without a handle that arrive while the host's turn is taken are served together, by
        the next transaction (``_serve_waiting``)."""
        version = pool_cidrs[0].version if pool_cidrs else version
        if handle is None and count > 0 and version == 4:
            return await self._wait_for_turn(host, Pending(count, attrs), pool_cidrs)
        async with self._host_locks.setdefault(host, asyncio.Lock()):
            return await self._auto_assign(host, count, pool_cidrs, handle, attrs, version)

    async def _wait_for_turn(self, host: str, request: Pending, pool_cidrs: list[IPNet] | None) -> list[IP]:
        """Queue request with the host's others of the same pools; the first starts their server."""
        key = (host, tuple(pool_cidrs) if pool_cidrs else None)
        self._waiting.setdefault(key, []).append(request)
        if key not in self._servers:
            self._servers[key] = asyncio.ensure_future(self._serve_waiting(key))
        return await request.result

    async def _serve_waiting(self, key: tuple[str, tuple[IPNet, ...] | None]) -> None:
        """While a host's requests of some pools are waiting: take them all, in their order, at
        the host's next turn and serve them with one transaction (a group commit: the round
        trip is shared, what each gets is what one request after another would have got).
        A request cancelled while it waited is left out."""
        host, pools = key
        waiting = self._waiting[key]
        batch: list[Pending] = []
        try:
            while waiting:
                async with self._host_locks.setdefault(host, asyncio.Lock()):
                    batch = [request for request in waiting if not request.result.done()]
                    waiting.clear()
                    await self._serve(host, batch, list(pools) if pools else None)
        except BaseException as error:  # cancelled with its loop: nobody is left waiting forever
            for request in [*batch, *waiting]:
                request.settle(error)
            raise
        finally:
            del self._servers[key], self._waiting[key]

    async def _serve(self, host: str, batch: list[Pending], pool_cidrs: list[IPNet] | None) -> None:
        """One transaction for the whole batch, then the long way for any request it left short;
        an error reaches the requests it concerns, never the server."""
        try:
            if batch:
                await self._from_known_blocks(host, batch, pool_cidrs)
        except Exception as error:
            for request in batch:
                request.settle(error)
            return
        for request in batch:
            try:
                if not request.satisfied:
                    request.taken += await self._auto_assign(host, request.count - len(request.taken), pool_cidrs,
                                                             None, request.attrs, 4)
            except Exception as error:
                request.settle(error)
            else:
                request.settle()

    async def _auto_assign(self, host: str, count: int, pool_cidrs: list[IPNet] | None, handle: str | None,
                           attrs: dict | None, version: int) -> list[IP]:
        """The long way, libcalico-go's: fresh reads and one compare-and-swap a block."""
        found: list[IP] = []
        self._views.pop(host, None)  # what follows may claim blocks: read afresh next time
        pools = await self._pools_for(pool_cidrs, version)
        if not pools or count <= 0:
            return found
        config = await self.config()

        def in_pools(cidr: IPNet) -> bool:
            return any(cidr.subnet_of(pool) for pool in pools)

        for cidr in await self.affine_blocks(host, version):
            if len(found) < count and in_pools(cidr):
                found += await self._allocate_from(cidr, count - len(found), handle, attrs)
        if config.auto_allocate_blocks:
            for pool in pools:
                while len(found) < count:
                    cidr = await self._claim_block(host, pool)
                    if cidr is None:
                        break
                    found += await self._allocate_from(cidr, count - len(found), handle, attrs)
        if len(found) < count and not config.strict_affinity:
            for block in sorted(await self.blocks(version), key=lambda b: b.cidr):
                if len(found) < count and in_pools(block.cidr) and block.unallocated:
                    found += await self._allocate_from(block.cidr, count - len(found), handle, attrs)
        return found

    async def assign_ip(self, ip: IP | str, host: str, handle: str | None = None, attrs: dict | None = None) -> IP:
        """Assign exactly ip (claiming its block for host if nobody has it)."""
        ip = parse_ip(ip)
        if not any(ip in pool for pool in await self._pools_for(None, ip.version)):
            raise IPAMError("The provided IP address is not in a configured pool")
        cidr = block_of(ip)

        async def attempt():
            block, revision = await self.block(cidr)
            extra = Txn()
            if block is None:
                block = Block.new(cidr, host)
                extra.put(keys.affinity(host, cidr), {})
            block.assign(ip, handle, attrs)
            return ip if await self._write_block(block, revision, handle, 1, extra) else None
        return await self._retrying(attempt)

    # -- releasing -----------------------------------------------------------------------------
    async def release_ips(self, ips: list[IP | str]) -> list[IP]:
        """Release each address; returns those that were not assigned (releasing twice is harmless)."""
        not_assigned = []
        for ip in [parse_ip(ip) for ip in ips]:
            async def attempt(ip=ip):
                block, revision = await self.block(block_of(ip))
                if block is None:
                    return False
                try:
                    handle = block.release(ip)
                except KeyError:
                    return False
                return True if await self._write_block(block, revision, handle, -1) else None
            if not await self._retrying(attempt):
                not_assigned.append(ip)
        return not_assigned

    async def release_by_handle(self, handle: str) -> list[IP]:
        """Release every address allocated with handle; returns them."""
        entry = await self.ds.get(keys.handle(handle))
        released = []
        for cidr in handle_from_value(entry.value) if entry else {}:
            block, _ = await self.block(ipaddress.ip_network(cidr))
            if block is None:
                continue
            mine = [block.ip(o) for o, index in enumerate(block.allocations)
                    if index is not None and block.attributes[index]["handle_id"] == handle]
            await self.release_ips(mine)
            released += mine
        return released

    async def attributes(self, ip: IP | str) -> dict | None:
        """The attributes of an assigned ip; None if it is not assigned."""
        ip = parse_ip(ip)
        block, _ = await self.block(block_of(ip))
        return None if block is None else block.attributes_of(ip)

    async def release_host_affinities(self, host: str, pool: IPNet | None = None) -> None:
        """Drop host's affinity to its blocks (in pool): empty blocks go, others keep their addresses."""
        versions = (4, 6) if pool is None else (pool.version,)
        for cidr in [cidr for version in versions for cidr in await self.affine_blocks(host, version)]:
            if pool is not None and not cidr.subnet_of(pool):
                continue

            async def attempt(cidr=cidr):
                block, revision = await self.block(cidr)
                txn = Txn().delete(keys.affinity(host, cidr))
                if block is None or block.host != host:
                    return await self.ds.commit(txn) or None
                block.affinity = None
                return True if await self._write_block(block, revision, None, 0, txn) else None
            await self._retrying(attempt)

    async def delete_pool(self, cidr: IPNet) -> None:
        """Calico's order: disable the pool, release every host's affinity inside it, delete it."""
        entry = await self.ds.get(keys.pool(cidr))
        if entry is None:
            raise IPAMError(f"resource does not exist: IPPool(cidr={cidr})")
        await self.ds.put(keys.pool(cidr), replace(IPPool.from_value(entry.value), disabled=True).to_value())
        hosts = {keys.host_of(e.key, keys.IPAM_HOSTS) for e in await self.ds.list(keys.IPAM_HOSTS)}
        for host in sorted(hosts):
            await self.release_host_affinities(host, cidr)
        await self.ds.commit(Txn().delete(keys.pool(cidr)))

    # -- tunnel addresses (IPIP's on tunl0, VXLAN's on vxlan.calico) ---------------------------
    async def ensure_tunnel_address(self, host: str, kind: str = "ipip") -> IP | None:
        """Give host a tunnel address from a pool of that encapsulation, move it when its pool
        goes, drop it when none is left."""
        tunnel = TUNNELS[kind]
        key = keys.host_config(host, tunnel.param)
        current = await self.ds.value(key)
        tunnel_pools = [p.cidr for p in await self.pools() if getattr(p, kind) and p.cidr.version == 4]
        if current and any(ipaddress.ip_address(current) in pool for pool in tunnel_pools):
            return ipaddress.ip_address(current)
        if current:
            await self.release_ips([current])
        if not tunnel_pools:
            await self.ds.commit(Txn().delete(key))
            return None
        assigned = await self.auto_assign(host, 1, tunnel_pools, handle=f"{tunnel.handle_prefix}{host}",
                                          attrs={"type": tunnel.attribute_type})
        if not assigned:
            await self.ds.commit(Txn().delete(key))
            return None
        await self.ds.put(key, str(assigned[0]))
        return assigned[0]
