"""Felix's dataplane for workload endpoints, the way Calico's Python Felix did it: the desired
state is computed from the datastore, then the kernel is made to match it.

For each endpoint of this host: the host side `cali…` gets proxy ARP
(so the workload reaches 169.254.1.1, which the host never holds), `proxy_delay=0`,
`rp_filter=1`, `route_localnet=1`; a permanent ARP entry for the workload's IP and MAC; and a
`/32` route to it through the interface.  IPv6 (Felix 2.x): `proxy_ndp=1` and a `/128` route per
address, no static neighbour (the kernel's NDP finds the workload; its gateway is the host side's
own link-local address).  Routes to workloads that are gone are removed, and so are the kernel's
connections (conntrack) of an address that goes or comes, as Felix does: the next holder of an address
would otherwise take up its predecessor's flows (a fresh busybox's ping always has the same ICMP
id), NAT decision included, so a workload in a pool re-created with nat-outgoing left un-NATed.
Blocks' blackhole routes and the routes to other hosts' blocks come from BIRD.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..datastore.resources import WorkloadEndpoint

WORKLOAD_INTERFACE_PREFIX = "cali"
IFF_UP = 0x1
ROUTE_PROTOCOL = 4  # "static": BIRD's kernel protocol learns these, so borrowed /32s are advertised
INTERFACE_SYSCTLS = {"ipv4/conf/{}/proxy_arp": "1", "ipv4/conf/{}/rp_filter": "1",
                     "ipv4/conf/{}/route_localnet": "1", "ipv4/neigh/{}/proxy_delay": "0"}
IPV6_INTERFACE_SYSCTLS = {"ipv6/conf/{}/proxy_ndp": "1"}
CONNTRACK_TABLE = Path("/proc/net/nf_conntrack")  # this namespace's entries, as text (IPv6 uncompressed)
log = logging.getLogger("calico-felix")


@dataclass(frozen=True)
class WorkloadInterface:
    name: str
    mac: str
    addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]


def desired_interfaces(entries: dict[str, Any], host: str, ipv6: bool = True) -> dict[str, WorkloadInterface]:
    """The workload interfaces this host must program, from its endpoint keys; without ipv6
    (FELIX_IPV6SUPPORT=false) their IPv4 addresses only."""
    return {endpoint.interface: WorkloadInterface(endpoint.interface, endpoint.mac,
                                                  tuple(a for a in endpoint.addresses if ipv6 or a.version == 4))
            for endpoint in WorkloadEndpoint.from_entries(entries) if endpoint.node == host and endpoint.active}


class Dataplane:
    """What this Felix has programmed, so that a pass touches only what changed: a new or changed
    endpoint is programmed, a gone one's routes are removed, and the others are left alone (as
    Calico's Felix, which reacts to each update and refreshes everything on a timer).  The first
    pass, and the first after FULL_RESYNC seconds, is a full one: every interface, and every stale
    route found in the kernel (a route deleted by hand comes back, one left by an earlier run goes)."""

    FULL_RESYNC = 60.0

    def __init__(self) -> None:
        self.programmed: dict[str, WorkloadInterface] = {}
        self.full_at: float | None = None

    def apply(self, wanted: dict[str, WorkloadInterface]) -> set[str]:
        """Make the kernel match wanted; returns the interfaces that are not there (or not up) yet.
        The timer's full pass forgets, as every pass does, the connections of the addresses that
        came or went since the last pass: a pass is a full one by the clock, not by what changed."""
        if self.full_at is not None and time.monotonic() - self.full_at < self.FULL_RESYNC:
            return apply(wanted, self.programmed)
        if self.full_at is not None:
            remove_connections(changed_addresses(self.programmed, wanted))
        missing = apply(wanted)
        self.programmed = {name: interface for name, interface in wanted.items() if name not in missing}
        self.full_at = time.monotonic()
        return missing


def apply(wanted: dict[str, WorkloadInterface], programmed: dict[str, WorkloadInterface] | None = None) -> set[str]:
    """Make this namespace's kernel match wanted; returns the interfaces that are not there yet,
    to be tried again: libnetwork creates them at Join, after the endpoint is stored, and sets
    them up a moment later (a route through a down interface is refused with ENETDOWN).
    programmed (updated in place) is what earlier calls made, even none (a host whose last
    workload went); without it this is a full pass."""
    from pyroute2 import IPRoute, NetlinkError

    try:
        with IPRoute() as ipr:
            if programmed is not None:
                return _apply_changes(ipr, wanted, programmed)
            return _apply(ipr, wanted)
    except NetlinkError as error:
        raise OSError(error.code, f"programming workload interfaces: {error}") from error


def _program(ipr, interface: WorkloadInterface, index: int) -> None:
    """Proxy ARP and friends, the ARP entry and the routes of one interface."""
    from pyroute2.netlink.rtnl.ndmsg import NUD_PERMANENT

    sysctls = dict(INTERFACE_SYSCTLS)
    ipv6 = any(address.version == 6 for address in interface.addresses)
    if ipv6 and Path("/proc/sys/net/ipv6/conf", interface.name).exists():
        sysctls.update(IPV6_INTERFACE_SYSCTLS)
    for pattern, value in sysctls.items():
        Path("/proc/sys/net", pattern.format(interface.name)).write_text(value)
    for address in interface.addresses:
        if address.version == 4:
            ipr.neigh("replace", dst=str(address), lladdr=interface.mac, ifindex=index, state=NUD_PERMANENT)
        ipr.route("replace", dst=f"{address}/{address.max_prefixlen}", oif=index, scope="link", proto=ROUTE_PROTOCOL)


def _apply_changes(ipr, wanted: dict[str, WorkloadInterface], programmed: dict[str, WorkloadInterface]) -> set[str]:
    """Only the differences from programmed: new or changed interfaces (looked up by name), and
    the routes of addresses no longer wanted on an interface programmed before; the connections
    of every address that went or came are forgotten first.  An interface not there yet is left
    for the pass that programs it, its addresses' connections too: each forgetting walks the
    kernel's whole conntrack table (15 ms here, every namespace's entries), and a new endpoint's
    first pass comes before its Join has made the interface."""
    changed = sorted(name for name in set(programmed) | set(wanted) if programmed.get(name) != wanted.get(name))
    links = {name: _link(ipr, name) for name in changed}
    missing = {name for name in changed if wanted.get(name) is not None
               and (links[name] is None or not links[name]["flags"] & IFF_UP)}
    remove_connections(changed_addresses(programmed, {name: wanted[name] for name in wanted if name not in missing}))
    for name in changed:
        before, after, link = programmed.get(name), wanted.get(name), links[name]
        if link is not None and before is not None:
            kept = set(after.addresses) if after is not None else set()
            for address in set(before.addresses) - kept:
                _delete_route(ipr, f"{address}/{address.max_prefixlen}", link["index"])
        programmed.pop(name, None)
        if after is None or name in missing:
            continue
        _program(ipr, after, link["index"])
        programmed[name] = after
    return missing


def _link(ipr, name: str):
    """The interface called name, None if there is none (gone: the kernel took its routes with it)."""
    from pyroute2 import NetlinkError

    try:
        (link,) = ipr.link("get", ifname=name)
    except NetlinkError as error:
        if error.code != errno.ENODEV:
            raise
        return None
    return link


def addresses_of(interface: WorkloadInterface | None) -> set:
    return set(interface.addresses) if interface is not None else set()


def changed_addresses(programmed: dict[str, WorkloadInterface], wanted: dict[str, WorkloadInterface]) -> set:
    """The addresses that come or go on an interface between what is programmed and what is wanted."""
    return {address for name in set(programmed) | set(wanted)
            for address in addresses_of(programmed.get(name)) ^ addresses_of(wanted.get(name))}


def remove_connections(addresses: set) -> None:
    """Delete this namespace's conntrack entries from or to any of these addresses (Felix runs
    `conntrack -D` with --orig-src, --orig-dst, --reply-src and --reply-dst for each)."""
    from pyroute2 import Conntrack, NetlinkError

    if not addresses or not any_connection_of(addresses):
        return
    wanted = {ipaddress.ip_address(address) for address in addresses}
    conntrack = Conntrack()
    try:
        stale = [entry for entry in conntrack.dump_entries()
                 if wanted & {ipaddress.ip_address(a) for t in (entry.tuple_orig, entry.tuple_reply)
                              for a in (t.saddr, t.daddr) if a}]
        for entry in stale:
            try:
                conntrack.delete(entry)
            except NetlinkError as error:
                if error.code != errno.ENOENT:  # ended on its own since the dump
                    raise
    except NetlinkError as error:  # as the routes' errors: the pass is retried
        raise OSError(error.code, f"forgetting connections: {error}") from error
    finally:
        conntrack.close()
    if stale:
        log.info("removed %d conntrack entries of %s", len(stale), ", ".join(sorted(map(str, wanted))))


def any_connection_of(addresses: set) -> bool:
    """Whether this namespace's conntrack table has an entry from or to any of addresses, read
    from the kernel's text of it (1-2 ms, in C) rather than decoded by pyroute2 (70-120 ms for 50
    entries: the ping flows a host forwards make that many), which is then left to the few
    passes that have something to delete.  True where the kernel has no such file."""
    try:
        table = CONNTRACK_TABLE.read_text()
    except FileNotFoundError:
        return True
    named = {ipaddress.ip_address(address).exploded for address in addresses}  # as the kernel writes them
    return not named.isdisjoint(re.findall(r"(?:src|dst)=(\S+)", table))


def _delete_route(ipr, dst: str, index: int) -> None:
    from pyroute2 import NetlinkError

    try:
        ipr.route("del", dst=dst, oif=index, scope="link")  # pyroute2 would match scope universe
    except NetlinkError as error:
        if error.code != errno.ESRCH:  # not there (any more)
            raise


def _apply(ipr, wanted: dict[str, WorkloadInterface]) -> set[str]:
    missing = set()
    links = ipr.get_links()
    present = {link.get_attr("IFLA_IFNAME"): link["index"] for link in links}
    up = {link["index"] for link in links if link["flags"] & IFF_UP}
    for interface in wanted.values():
        index = present.get(interface.name)
        if index is None or index not in up:
            missing.add(interface.name)
            continue
        _program(ipr, interface, index)
    expected = {(str(a), present.get(i.name)) for i in wanted.values() for a in i.addresses}
    workload_indexes = {index for name, index in present.items() if name.startswith(WORKLOAD_INTERFACE_PREFIX)}
    gone: set[str] = set()
    for family, length in ((2, 32), (10, 128)):
        for route in ipr.get_routes(family=family, table=254):  # not the local table's own addresses
            if route.get_attr("RTA_OIF") in workload_indexes and route["dst_len"] == length:
                if (route.get_attr("RTA_DST"), route.get_attr("RTA_OIF")) not in expected:
                    _delete_route(ipr, f"{route.get_attr('RTA_DST')}/{length}", route.get_attr("RTA_OIF"))
                    gone.add(route.get_attr("RTA_DST"))
    remove_connections(gone)
    return missing
