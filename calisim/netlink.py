"""rtnetlink spoken directly, for the steps a new container waits for: the plugin's veth pair,
dockerd's move of it into the container and its configuration there, and Felix's programming of
its host side.  pyroute2 (0.9) runs an asyncio loop and its generic encoder for every request, and
its IPRoute() as much again: 2-5 ms each, ~50 ms a container; a message packed here costs
microseconds, and those that follow each other go to the kernel in one send (it runs them in order
and answers each), as Go's netlink packages that dockerd and Calico use cost them.  Only what those
steps ask: links by name or index (a veth pair, a rename, up, into a namespace, deleted),
addresses, routes, permanent neighbours, the dumps of links, routes and addresses, and the
kernel's address notifications."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import NamedTuple

NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 17, 18, 20, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE, RTM_NEWNEIGH = 24, 25, 26, 28
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x300, 0x100, 0x200, 0x400
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
NDA_DST, NDA_LLADDR, NUD_PERMANENT = 1, 2, 0x80
IFF_UP = 0x1
RT_TABLE_MAIN, RTN_UNICAST = 254, 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTNLGRP_IPV6_IFADDR = 9
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 270, 1
RECEIVE_BYTES = 1 << 16

HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
LINK = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
ADDRESS = struct.Struct("=BBBBi")  # ifaddrmsg: family, prefix length, flags, scope, index
ROUTE = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst/src length, tos, table, protocol, scope, type, flags
NEIGHBOUR = struct.Struct("=BxxxiHBB")  # ndmsg: family, index, state, flags, type
ATTRIBUTE = struct.Struct("=HH")  # rtattr: length, type
ANY_LINK = LINK.pack(socket.AF_UNSPEC, 0, 0, 0, 0)  # an ifinfomsg that names no link by itself


class NetlinkError(OSError):
    """The kernel refused a request (errno and its message, as `ip` would print them)."""

    def __init__(self, code: int):
        super().__init__(code, os.strerror(code))


class Link(NamedTuple):
    index: int
    flags: int  # IFF_*: IFF_UP when set up


class Route(NamedTuple):
    destination: str | None  # None: everywhere
    length: int
    oif: int | None
    table: int


@dataclass(frozen=True)
class Request:
    """One rtnetlink message to send: its type, flags beyond NLM_F_REQUEST|NLM_F_ACK, and body."""

    kind: int
    flags: int
    body: bytes


def attribute(kind: int, payload: bytes) -> bytes:
    length = ATTRIBUTE.size + len(payload)
    return ATTRIBUTE.pack(length, kind) + payload + bytes(-length % 4)


def name_attribute(name: str) -> bytes:
    return attribute(IFLA_IFNAME, name.encode() + b"\0")


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def mac_attribute(mac: str) -> bytes:
    return attribute(IFLA_ADDRESS, mac_bytes(mac))


def attributes(data: bytes, offset: int) -> dict[int, bytes]:
    """The attributes from offset to the end of data (a message's payload), by type."""
    found = {}
    while offset + ATTRIBUTE.size <= len(data):
        length, kind = ATTRIBUTE.unpack_from(data, offset)
        if length < ATTRIBUTE.size:
            break
        found[kind] = data[offset + ATTRIBUTE.size:offset + length]
        offset += (length + 3) & ~3
    return found


def link(index: int = 0, name: str = "", up: bool = False, master: int = 0, extra: bytes = b"",
         flags: int = 0) -> Request:
    """RTM_NEWLINK on the link with that index, or (index 0) that name; up sets IFF_UP, master
    enslaves it to that link (a bridge)."""
    header = LINK.pack(socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, IFF_UP if up else 0)
    enslaved = attribute(IFLA_MASTER, struct.pack("=I", master)) if master else b""
    return Request(RTM_NEWLINK, flags, header + (name_attribute(name) if name else b"") + enslaved + extra)


def veth(name: str, peer: str, peer_mac: str = "") -> Request:
    """A new veth pair in this namespace, the peer with peer_mac (else the kernel's random one)."""
    peer_info = attribute(VETH_INFO_PEER, ANY_LINK + name_attribute(peer)
                          + (mac_attribute(peer_mac) if peer_mac else b""))
    info = attribute(IFLA_LINKINFO, attribute(IFLA_INFO_KIND, b"veth") + attribute(IFLA_INFO_DATA, peer_info))
    return link(name=name, extra=info, flags=NLM_F_CREATE | NLM_F_EXCL)


def into_namespace(name: str, namespace_fd: int) -> Request:
    """The link called name into the network namespace open as namespace_fd."""
    return link(name=name, extra=attribute(IFLA_NET_NS_FD, struct.pack("=I", namespace_fd)))


def rename(index: int, name: str, mac: str) -> Request:
    return link(index, name, extra=mac_attribute(mac))


def delete(name: str) -> Request:
    return Request(RTM_DELLINK, 0, ANY_LINK + name_attribute(name))


def add_address(index: int, address: ipaddress.IPv4Interface | ipaddress.IPv6Interface, flags: int = 0) -> Request:
    """The address on the link (IPv4's local and peer address both, as `ip addr add` sets them)."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    packed = address.ip.packed
    local = attribute(IFA_LOCAL, packed) if address.version == 4 else b""
    return Request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                   ADDRESS.pack(family, address.network.prefixlen, flags, RT_SCOPE_UNIVERSE, index)
                   + local + attribute(IFA_ADDRESS, packed))


def add_route(index: int, destination: ipaddress.IPv4Network | ipaddress.IPv6Network, gateway: str | None,
              protocol: int) -> Request:
    """A new route in the main table out of the link: through gateway, or (None) on the link itself."""
    return route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, index, destination, gateway, protocol)


def replace_route(index: int, destination: ipaddress.IPv4Network | ipaddress.IPv6Network, protocol: int) -> Request:
    """The route on the link to destination, made or made so (`ip route replace ... scope link`)."""
    return route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, index, destination, None, protocol)


def delete_route(index: int, destination: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Request:
    """The route on the link to destination goes, whoever made it."""
    return route(RTM_DELROUTE, 0, index, destination, None, 0)


def route(kind: int, flags: int, index: int, destination: ipaddress.IPv4Network | ipaddress.IPv6Network,
          gateway: str | None, protocol: int) -> Request:
    family = socket.AF_INET if destination.version == 4 else socket.AF_INET6
    scope = RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK
    body = ROUTE.pack(family, destination.prefixlen, 0, 0, RT_TABLE_MAIN, protocol, scope, RTN_UNICAST, 0)
    body += attribute(RTA_DST, destination.network_address.packed) if destination.prefixlen else b""
    body += attribute(RTA_GATEWAY, ipaddress.ip_address(gateway).packed) if gateway else b""
    return Request(kind, flags, body + attribute(RTA_OIF, struct.pack("=i", index)))


def neighbour(index: int, address: ipaddress.IPv4Address, mac: str) -> Request:
    """A permanent ARP entry on the link (`ip neigh replace ... nud permanent`)."""
    return Request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE,
                   NEIGHBOUR.pack(socket.AF_INET, index, NUD_PERMANENT, 0, 0) + attribute(NDA_DST, address.packed)
                   + attribute(NDA_LLADDR, mac_bytes(mac)))


def raise_first_refusal(answers: list[int], allowed: int = 0) -> None:
    """NetlinkError for the first of a batch's answers that is neither done (0) nor allowed."""
    refused = next((code for code in answers if code not in (0, allowed)), 0)
    if refused:
        raise NetlinkError(refused)


def route_socket() -> socket.socket:
    """A NETLINK_ROUTE socket of the calling thread's network namespace (where it stays)."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)


class Rtnl:
    """One NETLINK_ROUTE socket: of the caller's network namespace, or one made in another."""

    def __init__(self, sock: socket.socket | None = None):
        self.socket = sock or route_socket()
        self.sequence = 0
        self.notifications: list[tuple[int, bytes]] = []  # (type, payload) of each, once subscribed

    def __enter__(self) -> "Rtnl":
        return self

    def __exit__(self, *exc: object) -> None:
        self.socket.close()

    def batch(self, requests: list[Request]) -> list[int]:
        """Send requests in one go (the kernel runs them in order, each whatever the one before
        it answered) and wait for every answer: each one's errno, 0 when done."""
        first = self.sequence + 1
        self.sequence += len(requests)
        self.socket.send(b"".join(
            HEADER.pack(HEADER.size + len(request.body), request.kind, request.flags | NLM_F_REQUEST | NLM_F_ACK,
                        first + offset, 0) + request.body for offset, request in enumerate(requests)))
        answers: dict[int, int] = {}
        while len(answers) < len(requests):
            for kind, sequence, payload in self.receive():
                if kind == NLMSG_ERROR and first <= sequence <= self.sequence:
                    answers[sequence] = -struct.unpack_from("=i", payload)[0]
        return [answers[first + offset] for offset in range(len(requests))]

    def send(self, kind: int, flags: int, body: bytes) -> int:
        """Send one message that the kernel answers with data (a get, a dump); its sequence number."""
        self.sequence += 1
        self.socket.send(HEADER.pack(HEADER.size + len(body), kind, flags | NLM_F_REQUEST, self.sequence, 0) + body)
        return self.sequence

    def request(self, request: Request) -> None:
        """One request; NetlinkError if the kernel refused it."""
        raise_first_refusal(self.batch([request]))

    def delete_if_there(self, name: str) -> None:
        """Delete the link called name; gone already is fine (a veth goes with its peer's
        namespace when the container's last process exits, at any moment)."""
        raise_first_refusal(self.batch([delete(name)]), errno.ENODEV)

    def find(self, name: str) -> Link:
        """The link called name (NetlinkError ENODEV: none is)."""
        asked = self.send(RTM_GETLINK, 0, ANY_LINK + name_attribute(name))
        while True:
            for answer, sequence, payload in self.receive():
                if sequence == asked and answer == NLMSG_ERROR:
                    raise NetlinkError(-struct.unpack_from("=i", payload)[0])
                if sequence == asked:
                    return Link(*LINK.unpack_from(payload)[2:4])

    def dump(self, kind: int, body: bytes) -> list[bytes]:
        """The payload of every message a dump request answers."""
        asked = self.send(kind, NLM_F_DUMP, body)
        found = []
        while True:
            for answer, sequence, payload in self.receive():
                if sequence != asked:
                    continue
                if answer == NLMSG_DONE:
                    return found
                if answer == NLMSG_ERROR:
                    raise NetlinkError(-struct.unpack_from("=i", payload)[0])
                found.append(payload)

    def receive(self) -> list[tuple[int, int, bytes]]:
        """The answers of one datagram: (type, sequence, payload) each; the kernel's notifications
        (sequence 0) are kept in self.notifications."""
        data = self.socket.recv(RECEIVE_BYTES)
        messages, offset = [], 0
        while offset + HEADER.size <= len(data):
            length, kind, _, sequence, _ = HEADER.unpack_from(data, offset)
            payload = data[offset + HEADER.size:offset + length]
            if sequence:
                messages.append((kind, sequence, payload))
            else:
                self.notifications.append((kind, payload))
            offset += (length + 3) & ~3
        return messages

    def subscribe(self, group: int) -> None:
        """Be told of the kernel's changes in group (RTNLGRP_*) from now on."""
        self.socket.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)

    def address_of(self, index: int, family: int, scope: int, timeout: float) -> str | None:
        """An address of that family and scope on the link: one it has, or the first the kernel
        reports (subscribe first) within timeout seconds; None if none came."""
        found = self.dump(RTM_GETADDR, ADDRESS.pack(family, 0, 0, 0, 0))
        deadline = time.monotonic() + timeout
        while True:
            found += [payload for kind, payload in self.notifications if kind == RTM_NEWADDR]
            self.notifications.clear()
            for payload in found:
                address_family, _, _, address_scope, address_index = ADDRESS.unpack_from(payload)
                if (address_family, address_scope, address_index) == (family, scope, index):
                    return str(ipaddress.ip_address(attributes(payload, ADDRESS.size)[IFA_ADDRESS]))
            found = []
            if time.monotonic() >= deadline:
                return None
            self.socket.settimeout(max(0.0, deadline - time.monotonic()))
            try:
                self.receive()
            except TimeoutError:
                return None
            finally:
                self.socket.settimeout(None)

    def links(self) -> dict[str, Link]:
        """Every link of the namespace, by name."""
        found = {}
        for payload in self.dump(RTM_GETLINK, ANY_LINK):
            name = attributes(payload, LINK.size).get(IFLA_IFNAME, b"").rstrip(b"\0").decode()
            found[name] = Link(*LINK.unpack_from(payload)[2:4])
        return found

    def routes(self, family: int) -> list[Route]:
        """Every route of that family, in every table."""
        found = []
        for payload in self.dump(RTM_GETROUTE, ROUTE.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
            found_attributes = attributes(payload, ROUTE.size)
            destination, table, oif = (found_attributes.get(kind) for kind in (RTA_DST, RTA_TABLE, RTA_OIF))
            found.append(Route(str(ipaddress.ip_address(destination)) if destination else None, payload[1],
                               struct.unpack("=i", oif)[0] if oif else None,
                               struct.unpack("=I", table)[0] if table else payload[4]))
        return found

    def has_default_route(self, family: int) -> bool:
        """Whether the main table has a route to everywhere of that family."""
        return any(route.length == 0 and route.table == RT_TABLE_MAIN for route in self.routes(family))
