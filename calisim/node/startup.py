"""calico/node's startup: enable forwarding, pick the node's address, register the node in etcd,
create the default pool when there is none (as calico/node v1.0 does).  Talks only to etcd and the
host's netlink."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..datastore import Datastore, DatastoreError, Txn, keys
from ..datastore.resources import IPPool, Node, as_value, mesh_value
from ..datastore.resources.ipam import IPAMConfig

DEFAULT_POOLS = (IPPool(ipaddress.ip_network("192.168.0.0/16")),
                 IPPool(ipaddress.ip_network("fd80:24e2:f998:72d6::/64")))
KERNEL_IPV6 = Path("/proc/sys/net/ipv6")  # calico/node makes the IPv6 default pool only where the kernel has IPv6
ETCD_WAIT = 60.0  # how long startup waits for etcd, as calico/node's "Waiting for etcd connection..."
SKIPPED_INTERFACES = ("lo", "cali", "tunl", "vxlan.calico", "docker")


class StartupError(RuntimeError):
    """The node cannot start (bad address, name clash, etcd unreachable)."""


class StartupStatus:
    """What a daemon (calico-node, a route reflector) says while it starts, written for the command
    that waits for it (calicoctl node run, routereflector run): `SAY` lines, then `READY` or `ERROR`."""

    def __init__(self, status_fd: int | None, logger: logging.Logger):
        self.stream = os.fdopen(status_fd, "w", buffering=1) if status_fd is not None else sys.stdout
        self.log = logger

    def report(self, line: str, final: bool = False) -> None:
        self.log.info("%s", line)
        self.stream.write(f"{'READY' if final else 'SAY'} {line}\n")
        if final and self.stream is not sys.stdout:
            self.stream.close()

    def fail(self, error: BaseException) -> None:
        """Whatever stops startup must reach the waiting command, not just the log."""
        if not self.stream.closed:
            self.stream.write(f"ERROR {error}\n")


@dataclass(frozen=True)
class NodeOptions:
    name: str
    ip: ipaddress.IPv4Interface | None = None  # None: autodetect
    ip6: str | None = None  # an IPv6 address (with optional /prefix), "autodetect", or None: keep the stored one
    as_number: int | None = None
    default_pools: bool = True
    backend: str = "bird"
    libnetwork: bool = True  # serve the `calico` and `calico-ipam` Docker plugins (CALICO_LIBNETWORK_ENABLED)
    ipip_backend: str = "auto"  # kernel, ebpf, userspace, or auto: the best this machine has (CALICO_IPIP_BACKEND)


def host_addresses(version: int) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The host's global addresses of one IP version, on interfaces that are not Calico's own, in the kernel's order."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        return [ipaddress.ip_interface(f"{address.get_attr('IFA_ADDRESS')}/{address['prefixlen']}")
                for address in ipr.get_addr(family=2 if version == 4 else 10)
                if address["scope"] == 0 and not names.get(address["index"], "").startswith(SKIPPED_INTERFACES)]


def autodetect_ipv4() -> ipaddress.IPv4Interface:
    """The first global IPv4 address on an interface that is not Calico's own (Calico's 'first-found')."""
    for address in host_addresses(4):
        return address
    raise StartupError("Couldn't autodetect a management IPv4 address; please provide one with --ip")


def chosen_ipv6(spec: str | None) -> ipaddress.IPv6Interface | None:
    """The node's IPv6 address from --ip6: autodetected (first-found), or one that must be on this host."""
    if spec is None:
        return None
    found = host_addresses(6)
    if spec == "autodetect":
        if not found:
            raise StartupError("Couldn't autodetect a management IPv6 address; please provide one with --ip6")
        return found[0]
    ip6 = ipaddress.IPv6Interface(spec)
    if ip6.ip not in {address.ip for address in found}:
        raise StartupError(f"Unable to confirm IPv6 address {ip6.ip} is assigned to this host")
    return ip6  # a bare address is a /128, as a bare --ip is a /32


def check_addresses(nodes: list[Node], name: str,
                    ips: dict[int, ipaddress.IPv4Interface | ipaddress.IPv6Interface | None]) -> list[str]:
    """Calico's checks of the chosen addresses: one used by another node is fatal, a changed one a warning."""
    warnings = []
    for version, ip in ips.items():
        if ip is None:
            continue
        for node in nodes:
            stored = node.ipv4 if version == 4 else node.ipv6
            if stored is None:
                continue
            if node.node_name != name and stored.ip == ip.ip:
                raise StartupError(f"Calico node '{node.node_name}' is already using the IPv{version} address {ip.ip}. "
                                   "Please check your node name and IP address settings.")
            if node.node_name == name and stored.ip != ip.ip:
                warnings.append(f"WARNING: Calico node '{name}' IPv{version} address has changed: "
                                f"{stored.ip} -> {ip.ip}")
    return warnings


def enable_forwarding() -> list[str]:
    """IPv4 forwarding, and IPv6 forwarding where the kernel has IPv6; returns what it says."""
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    if not KERNEL_IPV6.exists():
        return ["Enabling IPv4 forwarding"]
    Path("/proc/sys/net/ipv6/conf/all/forwarding").write_text("1\n")
    return ["Enabling IPv4 forwarding", "Enabling IPv6 forwarding"]


async def register(ds: Datastore, options: NodeOptions) -> list[str]:
    """Calico's startup: global defaults, the node's keys, the default pool.  Returns what it says."""
    said = []
    ip6 = await asyncio.to_thread(chosen_ipv6, options.ip6)  # before anything is stored: a wrong --ip6 stores nothing
    for key, value in ((keys.READY, True), (keys.GLOBAL_AS, as_value(keys.DEFAULT_AS)),
                       (keys.NODE_MESH, mesh_value(True)),
                       (keys.IPAM_CONFIG, IPAMConfig().to_value())):
        await ds.create(key, value)  # a no-op where another node set it first
    if options.ip is None:
        ip = await asyncio.to_thread(autodetect_ipv4)  # pyroute2's blocking IPRoute runs its own loop
        said.append(f"Autodetected IPv4 address {ip.ip} on the host's interfaces")
    else:
        ip = options.ip
        said.append(f"Using IPv4 address {ip}")
    if ip6 is not None:
        said.append(f"{'Autodetected' if options.ip6 == 'autodetect' else 'Using'} IPv6 address {ip6}")
    nodes = await Node.load_all(ds)
    said += check_addresses(nodes, options.name, {4: ip, 6: ip6})
    existing = next((n for n in nodes if n.node_name == options.name), None)
    as_number = options.as_number if options.as_number is not None else (existing.as_number if existing else None)
    node = Node(options.name, ip, ip6 if ip6 is not None else (existing.ipv6 if existing else None), as_number)
    txn = Txn()
    for key in node.owned_keys():
        if key not in node.writes():
            txn.delete(key)
    for key, value in node.writes().items():
        txn.put(key, value)
    await ds.commit(txn)
    said.append("Using global AS number" if as_number is None else f"Using AS number {as_number}")
    said.append(f"Calico node name:  {options.name}")
    if options.default_pools:
        said += await create_default_pools(ds)
    return said


async def create_default_pools(ds: Datastore) -> list[str]:
    """Calico's default pool of each IP version that has none yet (IPv6 only where the kernel has
    IPv6, whatever the host's addresses: reference section 7)."""
    versions = {pool.cidr.version for pool in await IPPool.load_all(ds)}
    said = []
    for pool in DEFAULT_POOLS:
        if pool.cidr.version in versions or (pool.cidr.version == 6 and not KERNEL_IPV6.exists()):
            continue
        if await ds.create(pool.primary_key, pool.to_value()):
            said.append(f"Created default IPv{pool.cidr.version} pool ({pool.cidr}) with NAT outgoing false. "
                        "IPIP mode: off")
    return said


async def register_when_etcd_answers(ds: Datastore, options: NodeOptions, report) -> list[str]:
    """Register, retrying while etcd is unreachable or overloaded, up to ETCD_WAIT seconds."""
    deadline = asyncio.get_running_loop().time() + ETCD_WAIT
    delay = 0.5
    while True:
        try:
            return await register(ds, options)
        except DatastoreError as error:
            if asyncio.get_running_loop().time() + delay > deadline:
                raise StartupError(f"etcd did not answer within {ETCD_WAIT:.0f}s: {error}") from error
            report(f"Waiting for etcd connection... ({error})")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
