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
from ..datastore.resources import IPPool, Node, ValidationError, as_value, mesh_value
from ..datastore.resources.ipam import IPAMConfig
from . import autodetection
from .autodetection import SKIPPED_INTERFACES

DEFAULT_IPV4_POOL = ipaddress.ip_network("192.168.0.0/16")
DEFAULT_IPV6_POOL = ipaddress.ip_network("fd80:24e2:f998:72d6::/64")
KERNEL_IPV6 = Path("/proc/sys/net/ipv6")  # calico/node makes the IPv6 default pool only where the kernel has IPv6
ETCD_WAIT = 60.0  # how long startup waits for etcd, as calico/node's "Waiting for etcd connection..."
POOL_PREFIXES = (keys.POOLS_V4, keys.POOLS_V6)
FALSE_WORDS = ("false", "0", "no", "n", "f")  # what calico/node's environment booleans take for false


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
    ipv6_pool: ipaddress.IPv6Network = DEFAULT_IPV6_POOL  # the default IPv6 pool (CALICO_IPV6POOL_CIDR)
    ipv6_support: bool = True  # FELIX_IPV6SUPPORT: false means no IPv6 pool made and no IPv6 programmed
    ip6_autodetection_method: str = autodetection.FIRST_FOUND  # how --ip6=autodetect picks (IP6_AUTODETECTION_METHOD)


def env_bool(environ: dict, name: str, default: bool) -> bool:
    """An environment boolean as calico/node reads one: unset is the default, false/0/no/n/f false."""
    return environ[name].lower() not in FALSE_WORDS if name in environ else default


def no_default_pools(environ: dict) -> bool:
    """NO_DEFAULT_POOLS=true (that word only, any case, as calico/node reads it): no default pool at all."""
    return environ.get("NO_DEFAULT_POOLS", "").lower() == "true"


def ipv6_pool_from_env(environ: dict) -> ipaddress.IPv6Network:
    """CALICO_IPV6POOL_CIDR (default Calico's fd80:24e2:f998:72d6::/64), refused with calico/node's fatal
    errors before anything is stored: not an IPv6 CIDR, a pool calicoctl would refuse, or set beside
    NO_DEFAULT_POOLS=true."""
    text = environ.get("CALICO_IPV6POOL_CIDR", "")
    if no_default_pools(environ) and (text or environ.get("CALICO_IPV4POOL_CIDR")):
        raise StartupError("Invalid configuration with NO_DEFAULT_POOLS defined and CALICO_IPV4POOL_CIDR or "
                           "CALICO_IPV6POOL_CIDR defined.")
    if not text:
        return DEFAULT_IPV6_POOL
    try:
        cidr = ipaddress.ip_network(text, strict=False) if "/" in text else None  # Go's ParseCIDR masks host bits
    except ValueError:
        cidr = None
    if not isinstance(cidr, ipaddress.IPv6Network):
        raise StartupError(f"Invalid CIDR specified in CALICO_IPV6POOL_CIDR '{text}'")
    try:
        IPPool.from_document({"apiVersion": "v1", "kind": "ipPool", "metadata": {"cidr": str(cidr)}})
    except ValidationError as error:
        raise StartupError(f"Failed to create default IPv6 IP pool: {error}") from None
    return cidr


def host_addresses(version: int) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The host's global addresses of one IP version, on interfaces that are not Calico's own, in the kernel's order."""
    return [address for name, address in autodetection.host_interfaces(version)
            if not name.startswith(SKIPPED_INTERFACES)]


def autodetect_ipv4() -> ipaddress.IPv4Interface:
    """The first global IPv4 address on an interface that is not Calico's own (Calico's 'first-found')."""
    for address in host_addresses(4):
        return address
    raise StartupError("Couldn't autodetect a management IPv4 address; please provide one with --ip")


def chosen_ipv6(spec: str | None,
                method: str = autodetection.FIRST_FOUND) -> tuple[ipaddress.IPv6Interface | None, str]:
    """The node's IPv6 address from --ip6 (autodetected by the method, or one that must be on this host),
    and what startup says of it."""
    if spec is None:
        return None, ""
    if spec == "autodetect" and method != autodetection.FIRST_FOUND:
        try:
            return autodetection.detect(method, 6)
        except autodetection.AutodetectionError as error:
            raise StartupError(f"Couldn't autodetect a management IPv6 address: {error}") from None
    found = host_addresses(6)
    if spec == "autodetect":
        if not found:
            raise StartupError("Couldn't autodetect a management IPv6 address; please provide one with --ip6")
        return found[0], f"Autodetected IPv6 address {found[0]}"
    ip6 = ipaddress.IPv6Interface(spec)
    if ip6.ip not in {address.ip for address in found}:
        raise StartupError(f"Unable to confirm IPv6 address {ip6.ip} is assigned to this host")
    return ip6, f"Using IPv6 address {ip6}"  # a bare address is a /128, as a bare --ip is a /32


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
    # before anything is stored: a wrong --ip6 stores nothing
    ip6, ip6_said = await asyncio.to_thread(chosen_ipv6, options.ip6, options.ip6_autodetection_method)
    defaults = {keys.READY: True, keys.GLOBAL_AS: as_value(keys.DEFAULT_AS), keys.NODE_MESH: mesh_value(True),
                keys.IPAM_CONFIG: IPAMConfig().to_value()}
    # what startup checks, in one request (at 100 hosts starting together, seven round trips a
    # node were most of etcd's work and a tenth of each node's start): the defaults, every node, the pools
    found, _ = await ds.read_at(list(defaults), [keys.HOSTS, keys.BGP_HOSTS, keys.POOLS_V4, keys.POOLS_V6])
    entries = {entry.key: entry.value for entry in found}
    for key, value in defaults.items():
        if key not in entries:
            await ds.create(key, value)  # as Calico: set where unset (a no-op where another node just did)
    if options.ip is None:
        ip = await asyncio.to_thread(autodetect_ipv4)  # pyroute2's blocking IPRoute runs its own loop
        said.append(f"Autodetected IPv4 address {ip.ip} on the host's interfaces")
    else:
        ip = options.ip
        said.append(f"Using IPv4 address {ip}")
    if ip6 is not None:
        said.append(ip6_said)
    nodes = Node.from_entries(entries)
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
        pools = [IPPool.from_value(value) for key, value in entries.items() if key.startswith(POOL_PREFIXES)]
        said += await create_default_pools(ds, options, pools)
    return said


async def create_default_pools(ds: Datastore, options: NodeOptions, pools: list[IPPool]) -> list[str]:
    """Calico's default pool of each IP version that has none yet among pools (IPv6 only where the
    kernel has IPv6, whatever the host's addresses: reference section 7, and only if FELIX_IPV6SUPPORT is not false)."""
    versions = {pool.cidr.version for pool in pools}
    ipv6 = options.ipv6_support and KERNEL_IPV6.exists()
    said = []
    for pool in (IPPool(DEFAULT_IPV4_POOL), IPPool(options.ipv6_pool)):
        if pool.cidr.version in versions or (pool.cidr.version == 6 and not ipv6):
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
