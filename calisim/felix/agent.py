"""Felix, as one agent inside calico-node: the desired dataplane computed from etcd, applied to
the kernel, for each of its parts (the model is Calico's original Python Felix).

* workloads (endpoints.py): routes, ARP entries and proxy ARP of this host's endpoints;
* IPIP (ipip.py): tunl0 with the host's tunnel address while an IPIP pool exists;
* VXLAN (vxlan.py): vxlan.calico, its MAC in etcd, the other hosts' neighbours, FDB and routes;
* policy (policy.py): this host's nftables table.

The node agent hands it every changed etcd key (``notice``); each part recomputes after a burst
of changes to its keys and every RESYNC seconds, and a failed pass is retried, never fatal.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from ..datastore import Datastore, DatastoreError, Txn, keys, next_pass
from ..ipam import IPAM, ConflictError, IPAMError
from ..node.paths import NodePaths
from . import endpoints, ipip, policy, vxlan

log = logging.getLogger("calico-node")


class Felix:
    """This host's dataplane, kept equal to etcd."""

    def __init__(self, ds: Datastore, name: str, paths: NodePaths, ipip_backend: str = "userspace"):
        self.ds = ds
        self.name = name
        self.paths = paths
        self.ipip_backend = ipip_backend
        self.tunnel: ipip.KernelTunnel | ipip.EbpfTunnel | ipip.UserspaceTunnel | None = None
        self.ipam = IPAM(ds)
        self.workloads = endpoints.Dataplane()
        self.workloads_changed = asyncio.Event()
        self.vxlan_changed = asyncio.Event()
        self.policy_changed = asyncio.Event()
        self.policy_applied: str | None = None
        self.resync()  # program what etcd already holds

    def notice(self, key: str) -> None:
        if key.startswith(endpoints.workloads_prefix(self.name)):
            self.workloads_changed.set()
        if key.startswith(tuple(vxlan.datastore_prefixes())):
            self.vxlan_changed.set()
        if key.startswith(tuple(policy.datastore_prefixes())):
            self.policy_changed.set()

    def resync(self) -> None:
        self.workloads_changed.set()
        self.vxlan_changed.set()
        self.policy_changed.set()

    def tasks(self) -> list[asyncio.Task]:
        return [asyncio.create_task(self.program_workloads()), asyncio.create_task(self.program_vxlan()),
                asyncio.create_task(self.program_policy())]

    def stop(self) -> None:
        if self.tunnel is not None:
            self.tunnel.stop()

    async def program_tunnel(self) -> ipaddress.IPv4Address | None:
        """tunl0 with the host's tunnel address while an IPIP pool exists (Felix's IpInIp part);
        returns the address."""
        address = await self.ipam.ensure_tunnel_address(self.name)
        if address is None and self.tunnel is None:
            return None
        if self.tunnel is None:
            host_ip = await self.ds.value(keys.bgp_host_ip_v4(self.name))
            self.tunnel = ipip.make_tunnel(self.ipip_backend, self.paths.run_dir)
            await asyncio.to_thread(self.tunnel.start, host_ip)
            log.info("IPIP tunnel %s up with the %s backend", ipip.TUNNEL, self.tunnel.name)
        await asyncio.to_thread(ipip.set_tunnel_address, address)
        return address

    async def program_vxlan(self) -> None:
        """Felix's VXLAN part: vxlan.calico with a tunnel address while a VXLAN pool exists, its
        MAC published in etcd, and every other host's neighbour, FDB entry and block routes."""
        while True:
            await next_pass(self.vxlan_changed)
            try:
                await self.ipam.ensure_tunnel_address(self.name, "vxlan")
                entries = {}
                for prefix in vxlan.datastore_prefixes():
                    entries.update({entry.key: entry.value for entry in await self.ds.list(prefix)})
                host_ip = entries[keys.host_bird_ip(self.name)]
                mac = await asyncio.to_thread(vxlan.apply, vxlan.desired(entries, self.name), host_ip)
                mac_key = keys.host_config(self.name, vxlan.MAC_PARAM)
                if mac != entries.get(mac_key):
                    await self.ds.commit(Txn().put(mac_key, mac) if mac else Txn().delete(mac_key))
            except (DatastoreError, IPAMError, ConflictError, OSError, KeyError) as error:
                log.error("VXLAN dataplane not programmed, retrying: %s", error)
                self.vxlan_changed.set()
            except Exception:  # a bug must not end VXLAN programming
                log.exception("VXLAN dataplane not programmed")

    async def program_policy(self) -> None:
        """Felix's policy part: this host's nftables table, recomputed from etcd after every
        change; a ruleset that fails to render or load leaves the last good one in place."""
        while True:
            await next_pass(self.policy_changed)
            try:
                entries = {}
                for prefix in policy.datastore_prefixes():
                    entries.update({entry.key: entry.value for entry in await self.ds.list(prefix)})
                model = policy.load(entries)
                if any(e.on_host and e.host == self.name and not e.interface for e in model.endpoints):
                    model = policy.with_interfaces(model, self.name, await asyncio.to_thread(policy.host_interface_addresses))
                text = policy.render(model, self.name)
                if text != self.policy_applied:
                    await asyncio.to_thread(policy.apply, text)
                    self.policy_applied = text
                    (self.paths.run_dir / "policy.nft").write_text(text)
                    log.info("policy programmed: %s", policy.summary(model, self.name))
            except DatastoreError as error:
                log.error("policy not recomputed, retrying: %s", error)
                self.policy_changed.set()
            except (policy.PolicyError, OSError) as error:
                log.error("kept the last good policy: %s", error)
            except Exception:  # a bug must not end enforcement of later changes
                log.exception("kept the last good policy")

    async def program_workloads(self) -> None:
        """Felix: keep the kernel's workload routes, ARP entries and proxy ARP equal to etcd's
        endpoints; poll while an endpoint's interface is still to come (Join creates it)."""
        missing: set[str] = set()
        while True:
            try:
                await asyncio.wait_for(self.workloads_changed.wait(), timeout=0.2 if missing else None)
            except asyncio.TimeoutError:
                pass
            self.workloads_changed.clear()
            try:
                entries = {e.key: e.value for e in await self.ds.list(endpoints.workloads_prefix(self.name))}
                missing = await asyncio.to_thread(self.workloads.apply, endpoints.desired_interfaces(entries, self.name))
            except (DatastoreError, OSError) as error:
                log.error("workload dataplane not programmed, retrying: %s", error)
                missing = {"(retry)"}
            except Exception:  # a bug must not end the programming of later workloads
                log.exception("workload dataplane not programmed, retrying")
                missing = {"(retry)"}
