"""VXLAN encapsulation for pools with `spec.vxlan.enabled` (beyond Calico v1.0: Calico 3.7's
VXLAN mode, done the way its Felix does it).

Every host with a VXLAN pool gets `vxlan.calico` (VNI 4096, UDP 4789, no learning, MTU 1450)
with a tunnel address from a VXLAN pool; its MAC goes to etcd next to the address.  For every
other such host Felix programs, with no BGP involved in the dataplane:
  * a permanent neighbour entry  <their tunnel address> -> <their MAC>  on vxlan.calico,
  * a forwarding entry           <their MAC> -> <their host address>   (where to send the UDP),
  * a route per block they own   <block> via <their tunnel address> dev vxlan.calico onlink.
BIRD still advertises the blocks but keeps them out of the kernel (bird.cfg.j2).

The desired state is computed from etcd (``desired``), then applied with netlink (``apply``).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from ..datastore import keys
from ..datastore.resources import IPPool
from ..datastore.resources.ipam import AllocationBlock
from ..ipam import TUNNELS

DEVICE = "vxlan.calico"
VNI = 4096
PORT = 4789
MTU = 1450  # 50 bytes of outer Ethernet, IP, UDP and VXLAN headers
MAC_PARAM = "VXLANTunnelMACAddr"
ADDRESS_PARAM = TUNNELS["vxlan"].param
RTNH_F_ONLINK = 4
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
FELIX_ROUTE_PROTOCOL = 80  # rtnetlink protocol of the routes Felix programs for VXLAN pools (as Calico's Felix)


def datastore_prefixes() -> list[str]:
    """The etcd prefixes the VXLAN dataplane is computed from."""
    return [keys.POOLS_V4, keys.HOSTS, keys.BLOCKS]


@dataclass(frozen=True)
class Peer:
    """Another host's end of the overlay."""
    host: str
    host_ip: str
    tunnel_ip: str
    mac: str


@dataclass(frozen=True)
class VxlanState:
    """What this host's vxlan.calico should look like; None from ``desired`` means no device."""
    tunnel_ip: str | None
    peers: tuple[Peer, ...]
    routes: tuple[tuple[str, str], ...]  # (block, via tunnel address of its host)


def desired(entries: dict[str, Any], me: str) -> VxlanState | None:
    """From etcd's keys (see ``datastore_prefixes``): the device, neighbours and routes of host me."""
    pools = [pool.cidr for pool in IPPool.from_entries(entries, 4) if pool.vxlan]
    if not pools:
        return None
    hosts = {keys.host_of(k) for k in entries if k.startswith(keys.HOSTS)}
    peers = {}
    for host in sorted(hosts - {me}):
        host_ip = entries.get(keys.host_bird_ip(host))
        tunnel_ip = entries.get(keys.host_config(host, ADDRESS_PARAM))
        mac = entries.get(keys.host_config(host, MAC_PARAM))
        if host_ip and tunnel_ip and mac:
            peers[host] = Peer(host, host_ip, tunnel_ip, mac)
    routes = []
    for key, block in entries.items():
        if not key.startswith(keys.BLOCKS):
            continue
        owner = AllocationBlock.host_of(block)
        cidr = ipaddress.ip_network(keys.key_to_cidr(keys.last_segment(key)))
        if owner in peers and any(cidr.subnet_of(pool) for pool in pools):
            routes.append((str(cidr), peers[owner].tunnel_ip))
    return VxlanState(entries.get(keys.host_config(me, ADDRESS_PARAM)), tuple(peers.values()), tuple(sorted(routes)))


def apply(state: VxlanState | None, host_ip: str) -> str | None:
    """Make this namespace's vxlan.calico match state (remove it for None); returns its MAC."""
    from pyroute2 import IPRoute, NetlinkError

    try:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=DEVICE)
            if state is None:
                if found:
                    ipr.link("del", index=found[0])
                return None
            index = found[0] if found else _create(ipr, host_ip)
            _set_address(ipr, index, state.tunnel_ip)
            _program_peers(ipr, index, state.peers)
            _program_routes(ipr, index, state.routes)
            return ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")
    except NetlinkError as error:
        raise OSError(error.code, f"programming {DEVICE}: {error}") from error


def _create(ipr, host_ip: str) -> int:
    uplink = ipr.get_addr(family=socket.AF_INET, address=host_ip)
    if not uplink:
        raise OSError(f"no interface has the host address {host_ip}")
    ipr.link("add", ifname=DEVICE, kind="vxlan", vxlan_id=VNI, vxlan_port=PORT, vxlan_learning=0,
             vxlan_local=host_ip, vxlan_link=uplink[0]["index"], mtu=MTU)
    index = ipr.link_lookup(ifname=DEVICE)[0]
    ipr.link("set", index=index, state="up")
    return index


def _set_address(ipr, index: int, address: str | None) -> None:
    for existing in ipr.get_addr(index=index, family=socket.AF_INET):
        if existing.get_attr("IFA_ADDRESS") != address:
            ipr.addr("del", index=index, address=existing.get_attr("IFA_ADDRESS"), prefixlen=existing["prefixlen"])
    if address and not ipr.get_addr(index=index, address=address):
        ipr.addr("add", index=index, address=address, prefixlen=32)


def _program_peers(ipr, index: int, peers: tuple[Peer, ...]) -> None:
    """Permanent ARP and FDB entries for exactly these peers."""
    wanted_neighbours = {peer.tunnel_ip: peer.mac for peer in peers}
    wanted_fdb = {peer.mac: peer.host_ip for peer in peers}
    for neighbour in ipr.get_neighbours(ifindex=index, family=socket.AF_INET):
        ip, mac = neighbour.get_attr("NDA_DST"), neighbour.get_attr("NDA_LLADDR")
        if wanted_neighbours.get(ip) != mac:
            ipr.neigh("del", dst=ip, ifindex=index)
    for entry in ipr.fdb("dump", ifindex=index):
        mac, destination = entry.get_attr("NDA_LLADDR"), entry.get_attr("NDA_DST")
        if entry["ifindex"] == index and destination and wanted_fdb.get(mac) != destination:
            ipr.fdb("del", ifindex=index, lladdr=mac, dst=destination)
    for ip, mac in wanted_neighbours.items():
        ipr.neigh("replace", dst=ip, lladdr=mac, ifindex=index, state=NUD_PERMANENT)
    for mac, destination in wanted_fdb.items():
        ipr.fdb("replace", ifindex=index, lladdr=mac, dst=destination, state=NUD_PERMANENT, flags=NTF_SELF)


def _program_routes(ipr, index: int, routes: tuple[tuple[str, str], ...]) -> None:
    """Exactly these Felix routes on vxlan.calico."""
    wanted = dict(routes)
    for route in ipr.get_routes(family=socket.AF_INET, oif=index, proto=FELIX_ROUTE_PROTOCOL):
        destination = f"{route.get_attr('RTA_DST')}/{route['dst_len']}"
        if wanted.get(destination) != route.get_attr("RTA_GATEWAY"):
            ipr.route("del", dst=destination, oif=index, proto=FELIX_ROUTE_PROTOCOL)
    for destination, gateway in wanted.items():
        ipr.route("replace", dst=destination, gateway=gateway, oif=index, flags=RTNH_F_ONLINK,
                  proto=FELIX_ROUTE_PROTOCOL)
