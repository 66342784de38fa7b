"""Docker's embedded DNS server (libnetwork's resolver), one per emulated dockerd: what a container
on a user-defined network asks at 127.0.0.11 (its /etc/resolv.conf says so).

Names come from Docker's cluster store (the same etcd, so containers on every host resolve): one
copy of its networks and endpoints, listed once and then watched (``datastore.Mirror``), so a new
container costs one event, not a rewrite of every container's /etc/hosts.  Each running container
has a UDP socket bound to 127.0.0.11:53 inside its own network namespace (127.0.0.0/8 is local on
its lo); one thread serves them all and follows the store, on one asyncio loop.

Answers as libnetwork's resolver does: A and AAAA for NAME and NAME.NETWORK (NAME: the
container's name, or one of its endpoint's aliases: `--network-alias`, the short ID; or, for the
asker alone, one of its `--link` aliases on the network the link was made on) on the
networks the asking container is on (a.b.c is tried whole, then as a.b in network c, then a in network b.c),
NOERROR without an answer for a name that has no address of the asked family, PTR for their
addresses (NAME.NETWORK).  Anything else is NXDOMAIN: what the host's own DNS would say of it
(Docker forwards other names there; calisim's hosts have no upstream server).  The module is not
called dns.py: that would shadow dnspython for a script run from this directory.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from ..datastore import Datastore, DatastoreError, Mirror
from ..datastore.etcd import Event
from ..datastore import keys
from ..datastore.resources.docker import Endpoint, Network
from .netns import in_namespace

ADDRESS = "127.0.0.11"
PORT = 53
TTL = 600  # seconds, libnetwork's respTTL
log = logging.getLogger("dockerd")

NetworkIDs = Callable[[], list[str]]  # the IDs of the networks a container is on, in the order it joined them
Links = Callable[[], dict[tuple[str, str], str]]  # a container's --link aliases: (network ID, alias) -> name


def canonical(address: str) -> str:
    return ipaddress.ip_address(address).compressed


@dataclass
class Records:
    """Docker's service records as read from the cluster store's keys: each network's name, and on
    each network every container's addresses (by lower-case name: DNS names ignore case, as did
    the /etc/hosts lines these records replace) and every address's container."""
    network_names: dict[str, str] = field(default_factory=dict)  # network ID -> name
    addresses: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (network ID, name) -> IPv4, IPv6
    names: dict[tuple[str, str], str] = field(default_factory=dict)  # (network ID, address) -> container name

    @classmethod
    def from_entries(cls, entries: dict[str, Any]) -> "Records":
        records = cls({network.id: network.name for network in Network.from_entries(entries)})
        for endpoint in Endpoint.from_entries(entries):
            for name in endpoint.names:
                records.addresses.setdefault((endpoint.network_id, name.lower()), []).extend(endpoint.addresses)
            for address in endpoint.addresses:
                records.names[(endpoint.network_id, canonical(address))] = endpoint.container
        return records

    def resolve(self, name: str, networks: Iterable[str], links: dict | None = None) -> list[str] | None:
        """The addresses of name (NAME, or NAME.NETWORK) on the asker's networks, in libnetwork's
        order: one of the asker's --link aliases on the network it was made on, then the whole name
        on each network, then ever shorter names in ever longer network names; None if no
        container there has the name."""
        name = name.rstrip(".").lower()
        networks = list(networks)
        for network in networks:
            linked = (links or {}).get((network, name))
            if linked is not None and (found := self.addresses.get((network, linked.lower()))):
                return found
        dots = [i for i, char in enumerate(name) if char == "."]
        for container, network_name in [(name, None), *((name[:i], name[i + 1:]) for i in reversed(dots))]:
            for network in networks:
                if network_name is not None and self.network_names.get(network, "").lower() != network_name:
                    continue
                found = self.addresses.get((network, container))
                if found:
                    return found
        return None

    def name_of(self, address: str, networks: Iterable[str]) -> str | None:
        """NAME.NETWORK of the container that has address on one of the asker's networks."""
        for network in networks:
            container = self.names.get((network, canonical(address)))
            if container is not None:
                return f"{container}.{self.network_names.get(network, network)}"
        return None


def answer(wire: bytes, records: Records, networks: list[str], links: dict | None = None) -> bytes | None:
    """The reply to one query from a container on networks; None for what is not a DNS query
    (dropped, as libnetwork's server drops it)."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    if query.flags & dns.flags.QR or len(query.question) != 1:
        return None
    question = query.question[0]
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.RA
    found = answers(question.name, question.rdclass, question.rdtype, records, networks, links)
    if found is None:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    elif found:
        reply.answer.append(dns.rrset.from_text_list(question.name, TTL, dns.rdataclass.IN, question.rdtype, found))
    return reply.to_wire()


def answers(name: dns.name.Name, rdclass: int, rdtype: int, records: Records, networks: list[str],
            links: dict | None = None) -> list[str] | None:
    """The records' data for one question ([] for a name that exists without that kind of
    address), None if the name is not Docker's."""
    if rdclass != dns.rdataclass.IN:
        return None
    if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        addresses = records.resolve(name.to_text(omit_final_dot=True), networks, links)
        if addresses is None:
            return None
        return [address for address in addresses if (":" in address) == (rdtype == dns.rdatatype.AAAA)]
    if rdtype == dns.rdatatype.PTR:
        try:
            address = dns.reversename.to_address(name)
        except (dns.exception.DNSException, ValueError):
            return None
        host = records.name_of(address, networks)
        return None if host is None else [host + "."]
    return None


def socket_in(pid: int) -> socket.socket:
    """A UDP socket on 127.0.0.11:53 in the network namespace of process pid (its lo up)."""
    def bound() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((ADDRESS, PORT))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    return in_namespace(pid, bound)


class EmbeddedDNS:
    """One dockerd's resolver: a thread with an asyncio loop that follows the cluster store's
    networks and endpoints and answers every local container's socket."""

    def __init__(self, endpoints: str):
        self.loop = asyncio.new_event_loop()
        self.mirror = Mirror(Datastore(endpoints), keys.DOCKER_STORE)
        self.view = self.mirror.view((keys.DOCKER_NETWORKS, keys.DOCKER_ENDPOINTS))
        self.sockets: dict[str, socket.socket] = {}  # container ID -> its socket (the loop's alone)
        self.local: dict[str, Any] = {}  # user-defined bridge networks' records: dockerd's own, in no store
        self.local_version = 0
        self._records = ((-1, -1), Records())  # (the versions it was built from, the records)

    def start(self) -> None:
        self.loop.create_task(self._follow())
        threading.Thread(target=self.loop.run_forever, name="dns", daemon=True).start()

    async def _follow(self) -> None:
        """Load the copy (again and again while etcd does not answer), then keep it current.  Were
        that ever to fail, the loop would still answer, from the copy as it was."""
        backoff = 0.5
        try:
            while True:
                try:
                    await self.mirror.load()
                    break
                except DatastoreError as error:
                    log.warning("names not loaded from etcd (%s); retrying in %.1fs", error, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10)
            await self.mirror.follow()
        except Exception:
            log.exception("the embedded DNS server no longer follows the cluster store")

    def records(self) -> Records:
        """The records of the view as it is now, built again only after it changed."""
        version, records = self._records
        if version != (self.view.version, self.local_version):
            entries = {**self.view.entries, **self.local}
            self._records = ((self.view.version, self.local_version), records := Records.from_entries(entries))
        return records

    # -- called from the daemon's threads ------------------------------------------------------
    def network(self, network_id: str) -> Network | None:
        """A network from the copy (None if it has not seen it yet): what `docker ps` and `inspect`
        show needs no etcd, as dockerd keeps its networks in memory (one dict read, safe across threads)."""
        value = self.view.entries.get(keys.docker_network(network_id))
        return None if value is None else Network.from_value(value)

    def serve(self, container: str, sock: socket.socket, networks: NetworkIDs, links: Links = dict) -> None:
        """Answer the container's queries on sock (``socket_in`` its network namespace)."""
        self.loop.call_soon_threadsafe(self._add, container, sock, networks, links)

    def close(self, container: str) -> None:
        """Stop answering the container (its socket holds its network namespace)."""
        self.loop.call_soon_threadsafe(self._remove, container)

    def record(self, endpoint: Endpoint, present: bool) -> None:
        """An endpoint this daemon has just stored (present) or deleted, in the name table at once,
        as libnetwork adds and drops a local endpoint's records itself: the name resolves as soon
        as `docker run` has answered and not after `docker rm` has, without waiting for the watch
        (whose event for it then changes nothing).  Queued before the daemon answers, so it is on
        the loop before any query that answer can lead to."""
        event = Event(endpoint.key, endpoint.to_value() if present else None, 0)
        self.loop.call_soon_threadsafe(self.mirror.apply, event)

    def record_local(self, key: str, value: dict | None) -> None:
        """A local network or endpoint (a user-defined bridge's) this daemon made (value) or removed
        (None): kept apart from the store's copy, which a reload from etcd replaces."""
        self.loop.call_soon_threadsafe(self._set_local, key, value)

    # -- on the loop ---------------------------------------------------------------------------
    def _set_local(self, key: str, value: dict | None) -> None:
        if value is None:
            self.local.pop(key, None)
        else:
            self.local[key] = value
        self.local_version += 1

    def _add(self, container: str, sock: socket.socket, networks: NetworkIDs, links: Links) -> None:
        self._remove(container)
        self.sockets[container] = sock
        self.loop.add_reader(sock.fileno(), self._reply, sock, networks, links)

    def _remove(self, container: str) -> None:
        sock = self.sockets.pop(container, None)
        if sock is not None:
            self.loop.remove_reader(sock.fileno())
            sock.close()

    def _reply(self, sock: socket.socket, networks: NetworkIDs, links: Links) -> None:
        try:
            query, asker = sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        reply = answer(query, self.records(), networks(), links())
        if reply is not None:
            try:
                sock.sendto(reply, asker)
            except OSError as error:  # the asker has gone
                log.debug("no reply to %s: %s", asker, error)
