"""Felix, as one agent inside calico-node: the desired dataplane computed from etcd, applied to
the kernel, for each of its parts (the model is Calico's original Python Felix).

* workloads (endpoints.py): routes, ARP entries and proxy ARP of this host's endpoints;
* IPIP (ipip.py): tunl0 with the host's tunnel address while an IPIP pool exists, made, moved or
  taken down as soon as a pool's change lands (as calico-node allocates tunnel addresses when pools
  change), and again before each of confd's renders, whose kernel routes name tunl0;
* VXLAN (vxlan.py): vxlan.calico, its MAC in etcd, the other hosts' neighbours, FDB and routes;
* policy (policy.py): this host's nftables table.

Each part reads etcd's keys from its view of the node's mirror of etcd (datastore.Mirror) and
recomputes after a burst of changes to them and every RESYNC seconds, a failed pass retried,
never fatal.  A resync re-applies what the kernel holds (tunnel, VXLAN); policy, computed from
etcd's keys alone, is recomputed on a resync only when its last pass failed or its timer's full
rewrite is due (ruleset.Tables).  Workloads and policy are event-driven, as Felix's: a pass starts
as soon as the changes already received are in the view (no debounce timer), and whatever arrives
while it runs is the next pass's one batch, so a burst costs a few passes, not one per change;
under churn policy passes are throttled to 10 a second (Throttle), as Felix throttles its applies,
and those for other hosts' workload endpoints alone (set elements: addresses.py) to 2 a second.

A new workload's first packet must meet its whole dataplane: its route and proxy ARP (else its ARP
for 169.254.1.1 goes unanswered and the kernel asks again only a second later) and its policy
chains with the nat-outgoing rule (else the packet is dropped).  So the plugin's
ProgramExternalConnectivity waits for ``programmed`` before the container starts, as Calico's CNI
plugin waits for Felix's endpoint status (policy_setup_timeout_seconds).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from pathlib import Path
from typing import Callable

from ..datastore import RESYNC, Datastore, DatastoreError, Txn, View, keys, next_pass
from ..datastore.resources import IPPool
from ..ipam import IPAM, TUNNELS, ConflictError, IPAMError
from . import endpoints, ipip, policy, ruleset, vxlan
from .addresses import AddressSets

log = logging.getLogger("calico-node")


class Felix:
    """This host's dataplane, kept equal to etcd."""

    def __init__(self, ds: Datastore, view_of: Callable[..., View], name: str, run_dir: Path,
                 ipip_backend: str = "userspace", ipv6_support: bool = True):
        self.ds = ds  # for what Felix writes (the VXLAN MAC) and IPAM's tunnel addresses
        self.name = name
        self.run_dir = run_dir  # the node's /var/run/calico: the eBPF backend's pins, policy.nft
        self.ipip_backend = ipip_backend
        self.ipv6_support = ipv6_support  # FELIX_IPV6SUPPORT: false programs no IPv6 route, sysctl or rule
        self.tunnel: ipip.KernelTunnel | ipip.EbpfTunnel | ipip.UserspaceTunnel | None = None
        self.tunnel_lock = asyncio.Lock()  # the pools' own pass and confd's, one at a time
        self.ipam = IPAM(ds)
        self.tunnels = view_of([keys.POOLS_V4, keys.host_config(name, "")])  # pools, this host's addresses
        self.workloads = view_of([keys.workloads(name)])
        self.workload_dataplane = endpoints.Dataplane()  # what the workload passes programmed
        self.vxlan_active = False  # a VXLAN pool existed at the last pass: every host's keys then matter
        self.vxlan = view_of(vxlan.datastore_prefixes(), self.vxlan_depends_on)
        self.policy_names_host_addresses = False  # as of the last pass (policy.depends_on)
        self.policy = view_of(policy.datastore_prefixes(),
                              lambda key, entries: policy.depends_on(key, self.policy_names_host_addresses),
                              tracks_keys=True)
        self.policy_loader = policy.Loader()  # decodes only what changed since the last pass
        self.tables = ruleset.Tables(policy.REPLACE)  # what is in the kernel: the next change is a delta
        self.addresses = AddressSets(name)  # every host's endpoints and the address sets they fill
        self.policy_text: str | None = None  # the tables last rendered (their address sets declared empty)
        self.policy_file_current = True  # /var/run/calico/policy.nft shows the tables in the kernel
        self.policy_computed: int | None = None  # the policy view's version of the last good pass
        self.policed: frozenset[str] = frozenset()  # this host's workload interfaces in the table in the kernel
        self.progress = asyncio.Event()  # set (and replaced) after every workload or policy pass
        self.policy_throttle = Throttle()
        self.elements_throttle = Throttle(ELEMENTS_RATE, ELEMENTS_RATE)  # passes for other hosts' endpoints alone

    def tasks(self) -> list[asyncio.Task]:
        return [asyncio.create_task(self.program_workloads()), asyncio.create_task(self.program_vxlan()),
                asyncio.create_task(self.program_policy()), asyncio.create_task(self.follow_pools())]

    def passed(self) -> None:
        """Wake whoever waits in ``programmed``."""
        self.progress.set()
        self.progress = asyncio.Event()

    def ready(self, interface: str) -> bool:
        """The interface's routes, ARP entry and proxy ARP are in the kernel, and so are its policy
        chains (the table in place has them, with the pools' nat-outgoing)."""
        return interface in self.workload_dataplane.programmed and interface in self.policed

    async def programmed(self, interface: str, timeout: float) -> bool:
        """Wait until a workload interface's dataplane is complete (False: not within timeout).
        The caller has just made the interface, which Felix learns from the kernel's link
        notifications: the workload pass is woken now rather than at its next poll."""
        self.workloads.changed.set()
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.ready(interface):
            progress = self.progress
            try:
                await asyncio.wait_for(progress.wait(), deadline - asyncio.get_running_loop().time())
            except asyncio.TimeoutError:
                return self.ready(interface)
        return True

    def stop(self) -> None:
        if self.tunnel is not None:
            self.tunnel.stop()

    async def follow_pools(self) -> None:
        """The tunnel as soon as the pools or this host's addresses change, without waiting for
        confd's pass (which waits for a burst to settle, then renders BIRD's config after the
        tunnel): the seed's IPIP pool has its tunnel address 0.2-0.3 s sooner.  A pass that fails
        is tried again by confd's next one."""
        while True:
            await self.tunnels.changed.wait()
            self.tunnels.changed.clear()
            try:
                await self.program_tunnel()
            except (DatastoreError, IPAMError, ConflictError, OSError) as error:
                log.error("IPIP tunnel not programmed: %s", error)
            except Exception:  # a bug must not end the following of pools
                log.exception("IPIP tunnel not programmed")

    async def program_tunnel(self) -> ipaddress.IPv4Address | None:
        """tunl0 with the host's tunnel address while an IPIP pool exists (Felix's IpInIp part);
        returns the address."""
        async with self.tunnel_lock:
            return await self._program_tunnel()

    async def _program_tunnel(self) -> ipaddress.IPv4Address | None:
        address = await self.tunnel_address("ipip")
        if address is None and self.tunnel is None:
            return None
        if self.tunnel is None:
            host_ip = await self.ds.value(keys.bgp_host_ip_v4(self.name))
            self.tunnel = ipip.make_tunnel(self.ipip_backend, self.run_dir)
            await asyncio.to_thread(self.tunnel.start, host_ip)
            log.info("IPIP tunnel %s up with the %s backend", ipip.TUNNEL, self.tunnel.name)
        await asyncio.to_thread(ipip.set_tunnel_address, address)
        return address

    async def tunnel_address(self, kind: str) -> ipaddress.IPv4Address | None:
        """The host's tunnel address of that encapsulation: the one etcd holds while it is in an
        enabled pool of that kind (and none while there is no such pool and none is held), else
        what IPAM gives, moves or takes away (reading and writing etcd itself)."""
        entries = self.tunnels.read()
        current = entries.get(keys.host_config(self.name, TUNNELS[kind].param))
        pools = [pool.cidr for pool in IPPool.from_entries(entries, 4) if getattr(pool, kind) and not pool.disabled]
        if current and any(ipaddress.ip_address(current) in pool for pool in pools):
            return ipaddress.ip_address(current)
        if not current and not pools:
            return None
        return await self.ipam.ensure_tunnel_address(self.name, kind)

    def vxlan_depends_on(self, key: str, entries: dict) -> bool:
        """Without a VXLAN pool (at the last pass) VXLAN's state is no device, whatever the other
        hosts hold: only pools and this host's own keys can change that."""
        return self.vxlan_active or key.startswith((keys.POOLS_V4, keys.host(self.name)))

    async def program_vxlan(self) -> None:
        """Felix's VXLAN part: vxlan.calico with a tunnel address while a VXLAN pool exists, its
        MAC published in etcd, and every other host's neighbour, FDB entry and block routes."""
        while True:
            await next_pass(self.vxlan.changed)
            try:
                await self.tunnel_address("vxlan")
                entries = self.vxlan.read()
                host_ip = entries[keys.host_bird_ip(self.name)]
                state = vxlan.desired(entries, self.name)
                self.vxlan_active = state is not None
                mac = await asyncio.to_thread(vxlan.apply, state, host_ip)
                mac_key = keys.host_config(self.name, vxlan.MAC_PARAM)
                if mac != entries.get(mac_key):
                    await self.ds.commit(Txn().put(mac_key, mac) if mac else Txn().delete(mac_key))
            except (DatastoreError, IPAMError, ConflictError, OSError, KeyError) as error:
                log.error("VXLAN dataplane not programmed, retrying: %s", error)
                self.vxlan.changed.set()
            except Exception:  # a bug must not end VXLAN programming
                log.exception("VXLAN dataplane not programmed")

    async def program_policy(self) -> None:
        """Felix's policy part: this host's nftables tables, recomputed from etcd after every
        batch of changes and applied as a delta (ruleset.Tables); a ruleset that fails to render
        or load leaves the last good one in place."""
        while True:
            idle = await next_batch(self.policy)
            version = self.policy.version
            if version == self.policy_computed and not self.tables.resync_due():
                if idle:  # RESYNC seconds without a change: nothing to apply soon
                    await asyncio.to_thread(self.rest)
                continue  # else a wake for a change the last pass already took
            if self.other_hosts_endpoints_alone():
                await self.elements_turn()
            await self.policy_throttle.admit()  # under churn: what lands meanwhile joins this batch
            version = self.policy.version
            try:
                await self.policy_pass(version)
            except (policy.PolicyError, ruleset.NftError, OSError) as error:
                log.error("kept the last good policy: %s", error)
                self.addresses.structure = None  # the next pass a full one
            except Exception:  # a bug must not end enforcement of later changes
                log.exception("kept the last good policy")
                self.addresses.structure = None

    def other_hosts_endpoints_alone(self) -> bool:
        """The changes waiting for the next pass are other hosts' workload endpoints alone (their
        addresses into or out of the sets), and the next pass is not a full one."""
        touched = self.policy.touched
        return (bool(touched) and self.addresses.structure is not None and not self.tables.resync_due()
                and all(policy.key_kind(key) == "workload" and keys.host_of(key) != self.name for key in touched))

    async def elements_turn(self) -> None:
        """Under a stream of other hosts' endpoints alone, their passes go ELEMENTS_RATE a second
        (a lone one at once), each with what came meanwhile: one nft transaction for many, and
        Felix's per-pass work once, on every host for every workload created anywhere.  Anything
        else that changes meanwhile (this host's own endpoint, whose Join waits) ends the wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.elements_throttle.delay()
        while self.other_hosts_endpoints_alone() and (left := deadline - loop.time()) > 0:
            self.policy.changed.clear()
            try:
                await asyncio.wait_for(self.policy.changed.wait(), left)
            except asyncio.TimeoutError:
                break
        if self.other_hosts_endpoints_alone():
            self.elements_throttle.take()

    async def policy_pass(self, version: int) -> None:
        """One pass: the tables rendered and applied (a delta unless a rewrite is due), then the
        word to whoever waits in ``programmed``.  Only workload endpoints changed (of any host):
        those keys into the address sets, the tables rendered again only if one was this host's;
        anything else: a full pass from every key of the view."""
        touched = self.policy.take_touched()
        from_kernel = False
        if (touched is not None and self.addresses.structure is not None and not self.tables.resync_due()
                and all(policy.key_kind(key) == "workload" for key in touched)):
            restructured = [self.addresses.update(key, policy.workload_endpoint(key, self.policy.entries.get(key)))
                            for key in sorted(touched)]
            if any(restructured) or self.policy_text is None:
                self.policy_text = self.addresses.render(self.ipv6_support)
        else:
            from_kernel = await self.load_policy()
        apply = self.tables.apply  # a delta in place (a refused one is then rewritten here, rarely)
        if self.tables.delta_ready():
            how = apply(self.policy_text, self.addresses)
        else:
            how = await asyncio.to_thread(apply, self.policy_text, self.addresses)
        model = self.addresses.model()
        if how in ("delta", "rewrite"):
            self.write_policy_file()
            log.info("policy programmed (%s): %s", how, policy.summary(model, self.name))
        elif how == "elements":
            self.policy_file_current = False  # written when Felix rests: not every endpoint's addresses a pass
        self.policed = frozenset(e.interface for e in model.local(self.name, on_host=False))
        self.policy_computed = None if from_kernel else version
        self.passed()

    async def load_policy(self) -> bool:
        """A full pass's model, from every key of the view, into the address sets, and its tables
        rendered; True when they depend on the kernel's addresses (host endpoints named by
        address), so that every resync passes again."""
        model = self.policy_loader.load(self.policy.read())
        self.policy_names_host_addresses = policy.names_host_addresses(model, self.name)
        from_kernel = any(e.on_host and e.host == self.name and not e.interface for e in model.endpoints)
        if from_kernel:  # host endpoints named by address: the kernel's addresses may change
            model = policy.with_interfaces(model, self.name, await asyncio.to_thread(policy.host_interface_addresses))
        self.addresses.rebuild(model, self.policy_loader.workloads())
        self.policy_text = self.addresses.render(self.ipv6_support)
        return from_kernel

    def write_policy_file(self) -> None:
        """/var/run/calico/policy.nft: the tables in the kernel and their address sets' elements, as nft input."""
        text = self.tables.applied
        overwrite(self.run_dir / "policy.nft", text + self.addresses.fill(self.tables.parsed))
        self.policy_file_current = True

    def rest(self) -> None:
        """Nothing to apply soon: policy.nft written if only set elements changed since it was, and
        nft's context let go (ruleset.Tables.rest)."""
        if not self.policy_file_current and self.tables.applied is not None:
            self.write_policy_file()
        if self.tables.nft.context is not None:
            self.tables.rest()

    async def program_workloads(self) -> None:
        """Felix: keep the kernel's workload routes, ARP entries and proxy ARP equal to etcd's
        endpoints; poll while an endpoint's interface is still to come (Join creates it)."""
        missing: set[str] = set()
        while True:
            try:
                await asyncio.wait_for(self.workloads.changed.wait(), timeout=0.2 if missing else None)
            except asyncio.TimeoutError:
                pass
            self.workloads.changed.clear()
            try:
                wanted = endpoints.desired_interfaces(self.workloads.read(), self.name, self.ipv6_support)
                missing = await asyncio.to_thread(self.workload_dataplane.apply, wanted)
                self.passed()
            except OSError as error:
                log.error("workload dataplane not programmed, retrying: %s", error)
                missing = {"(retry)"}
            except Exception:  # a bug must not end the programming of later workloads
                log.exception("workload dataplane not programmed, retrying")
                missing = {"(retry)"}


def overwrite(path: Path, text: str) -> None:
    """The file made text, written over its old content and cut to length: emptied first (as by
    write_text), ext4 frees its blocks and allocates them again, ~10x the CPU, and up to
    milliseconds of the event loop's time on a busy disk, on every pass."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644), "wb") as file:
        file.write(text.encode())
        file.truncate()


COALESCE_MAX = 0.1  # seconds a pass may be put off while changes keep landing turn after turn
ELEMENTS_RATE = 2.0  # passes a second (and burst) for other hosts' endpoints alone, under churn


async def next_batch(view: View) -> bool:
    """Felix's rhythm for policy: wait for a change (or RESYNC seconds), then let the changes
    already received land (the watch may apply one event per turn of the event loop) without
    waiting on any timer, and go: a burst delivered at once is one batch, and one that never
    stops still gets a pass every COALESCE_MAX.  True when RESYNC seconds passed without a change."""
    try:
        await asyncio.wait_for(view.changed.wait(), timeout=RESYNC)
    except asyncio.TimeoutError:
        return True
    give_up = asyncio.get_running_loop().time() + COALESCE_MAX
    while asyncio.get_running_loop().time() < give_up:
        version = view.version
        await asyncio.sleep(0)
        if view.version == version:
            break
    view.changed.clear()
    return False


class Throttle:
    """Felix's apply throttle (its dataplane applies at most 10 times a second, bursts of 10): idle,
    a change goes at once; under churn each host's passes, which render every host's endpoints,
    stay at 10 a second instead of taking every CPU cycle from the workloads being created."""

    def __init__(self, rate: float = 10.0, burst: float = 10.0):
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, None

    def refill(self) -> None:
        now = asyncio.get_running_loop().time()
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def delay(self) -> float:
        """Seconds until a pass may go (0: now)."""
        self.refill()
        return max(0.0, (1 - self.tokens) / self.rate)

    def take(self) -> None:
        self.refill()
        self.tokens -= 1

    async def admit(self) -> None:
        if (wait := self.delay()) > 0:
            await asyncio.sleep(wait)
        self.take()
