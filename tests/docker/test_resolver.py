"""Docker's embedded DNS server (calisim.docker.resolver): its records and answers without root,
and one dockerd's server over a real etcd (the watch brings other hosts' endpoints; its own are
in the table before the daemon answers)."""

import asyncio
import socket
import time
from dataclasses import asdict

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from calisim.datastore import Datastore, Synchronous
from calisim.datastore.etcd import Event
from calisim.datastore.resources.docker import Endpoint
from calisim.docker.resolver import TTL, EmbeddedDNS, Records, answer
from calisim.datastore.keys import DOCKER_NETWORKS

NET1, NET2 = "1" * 64, "2" * 64
A = Endpoint("a" * 64, NET1, "workload-A", "10.0.0.1/32", "ee:ee:ee:ee:ee:ee", 100, "fd00::1/128")
B = Endpoint("b" * 64, NET2, "workload-B", "10.0.1.1/32", "ee:ee:ee:ee:ee:ee", 200)
C = Endpoint("c" * 64, NET1, "workload-C", "10.0.0.2/32", "ee:ee:ee:ee:ee:ee", 300)
WEB = Endpoint("d" * 64, NET2, "web.v2", "10.0.1.2/32", "ee:ee:ee:ee:ee:ee", 400)


def network(network_id: str, name: str) -> dict:
    return {"id": network_id, "name": name, "driver": "calico", "ipam_driver": "calico-ipam",
            "pool_id": "p", "pool": "10.0.0.0/16", "gateway": "0.0.0.0/0"}


ENTRIES = {DOCKER_NETWORKS + NET1: network(NET1, "my_net"), DOCKER_NETWORKS + NET2: network(NET2, "other"),
           **{endpoint.key: asdict(endpoint) for endpoint in (A, B, C, WEB)}}


def ask(name: str, rdtype: str, networks: list[str], records: Records | None = None) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    reply = answer(query.to_wire(), records or Records.from_entries(ENTRIES), networks)
    return dns.message.from_wire(reply)


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(rdata.to_text() for rrset in reply.answer for rdata in rrset)


def test_names_resolve_on_the_askers_networks_only():
    records = Records.from_entries(ENTRIES)
    assert records.resolve("workload-C", [NET1]) == ["10.0.0.2"]
    assert records.resolve("workload-c.MY_NET.", [NET1]) == ["10.0.0.2"]  # DNS names ignore case
    assert records.resolve("workload-A", [NET1]) == ["10.0.0.1", "fd00::1"]
    assert records.resolve("workload-B", [NET1]) is None  # another network's container
    assert records.resolve("workload-B.other", [NET1]) is None
    assert records.resolve("workload-C.other", [NET1, NET2]) is None  # the wrong network's name
    assert records.resolve("workload-B", [NET1, NET2]) == ["10.0.1.1"]
    # libnetwork's order: a.b.c whole, then a.b in network c: a dot in a name or a network's name.
    assert records.resolve("web.v2", [NET2]) == records.resolve("web.v2.other", [NET2]) == ["10.0.1.2"]
    assert records.name_of("10.0.0.2", [NET1]) == "workload-C.my_net"
    assert records.name_of("fd00:0::1", [NET1]) == "workload-A.my_net"
    assert records.name_of("10.0.1.1", [NET1]) is None


def test_a_link_alias_resolves_for_its_container_on_the_network_it_was_made_on():
    records = Records.from_entries(ENTRIES)
    links = {(NET1, "db"): "workload-C", (NET2, "front"): "web.v2", (NET1, "gone"): "nosuch"}
    assert records.resolve("DB", [NET1], links) == ["10.0.0.2"]
    assert records.resolve("db", [NET1]) is None  # another container's query: no such name
    assert records.resolve("front", [NET1], links) is None  # made on a network the asker is not on
    assert records.resolve("front", [NET1, NET2], links) == ["10.0.1.2"]
    assert records.resolve("gone", [NET1], links) is None  # the linked container has no endpoint there
    assert records.resolve("workload-A", [NET1], links) == ["10.0.0.1", "fd00::1"]  # names as before


def test_answers_are_docker_s_a_aaaa_ptr_nodata_and_nxdomain():
    reply = ask("workload-C", "A", [NET1])
    assert reply.rcode() == dns.rcode.NOERROR and addresses(reply) == ["10.0.0.2"]
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.RA and not reply.flags & dns.flags.AA
    assert reply.answer[0].ttl == TTL and reply.answer[0].name.to_text() == "workload-C."
    assert addresses(ask("workload-A.my_net", "AAAA", [NET1])) == ["fd00::1"]
    nodata = ask("workload-C", "AAAA", [NET1])  # the name exists, without an IPv6 address
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == []
    for name, rdtype in (("workload-B", "A"), ("workload-B", "AAAA"), ("nosuch", "A"), ("workload-C", "MX")):
        assert ask(name, rdtype, [NET1]).rcode() == dns.rcode.NXDOMAIN, (name, rdtype)
    assert ask("workload-C", "A", []).rcode() == dns.rcode.NXDOMAIN  # a container on no network
    ptr = ask(dns.reversename.from_address("10.0.0.2").to_text(), "PTR", [NET1])
    assert addresses(ptr) == ["workload-C.my_net."]
    assert ask(dns.reversename.from_address("10.0.1.1").to_text(), "PTR", [NET1]).rcode() == dns.rcode.NXDOMAIN
    assert answer(b"not a query", Records(), [NET1]) is None
    assert answer(dns.message.make_response(dns.message.make_query("x", "A")).to_wire(), Records(), [NET1]) is None


def test_the_daemon_s_own_endpoints_are_in_the_table_at_once_and_leave_it_at_once():
    resolver = EmbeddedDNS("http://127.0.0.1:2379")  # never started: no etcd is asked
    for key, value in ENTRIES.items():
        resolver.mirror.apply(Event(key, value, 1))
    new = Endpoint("e" * 64, NET1, "new", "10.0.0.9/32", "ee:ee:ee:ee:ee:ee", 500)
    resolver.record(new, present=True)
    resolver.loop.run_until_complete(asyncio.sleep(0))
    assert resolver.records().resolve("new", [NET1]) == ["10.0.0.9"]
    resolver.record(C, present=False)
    resolver.loop.run_until_complete(asyncio.sleep(0))
    assert resolver.records().resolve("workload-C", [NET1]) is None
    resolver.loop.close()


@pytest.mark.emulation
def test_one_server_answers_every_container_from_the_cluster_store(etcd):
    """Endpoints written by another host's daemon arrive by the watch; a removed one stops
    resolving; each socket answers for its own container's networks."""
    with Synchronous(Datastore(etcd)) as ds:
        for key, value in ENTRIES.items():
            ds.put(key, value)
        resolver = EmbeddedDNS(etcd)
        resolver.start()
        sockets = {}
        for container, networks in (("on-net1", [NET1]), ("on-net2", [NET2])):
            sockets[container] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets[container].bind(("127.0.0.1", 0))
            sockets[container].setblocking(False)
            resolver.serve(container, sockets[container], lambda networks=networks: networks)

        def query(container: str, name: str) -> dns.message.Message:
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            client.settimeout(2)
            with client:
                client.sendto(dns.message.make_query(name, "A").to_wire(), sockets[container].getsockname())
                return dns.message.from_wire(client.recv(512))

        def until(container: str, name: str, expected: list[str], seconds: float = 10) -> None:
            deadline = time.monotonic() + seconds
            while addresses(reply := query(container, name)) != expected:
                assert time.monotonic() < deadline, (container, name, reply.to_text())
                time.sleep(0.05)

        until("on-net1", "workload-C", ["10.0.0.2"])  # listed
        assert query("on-net1", "workload-B").rcode() == dns.rcode.NXDOMAIN
        assert addresses(query("on-net2", "workload-B.other")) == ["10.0.1.1"]
        later = Endpoint("f" * 64, NET1, "remote", "10.0.0.7/32", "ee:ee:ee:ee:ee:ee", 600)
        ds.put(later.key, asdict(later))
        until("on-net1", "remote", ["10.0.0.7"])  # watched
        ds.delete_prefix(later.key)
        until("on-net1", "remote", [])
        assert query("on-net1", "remote").rcode() == dns.rcode.NXDOMAIN
        resolver.close("on-net1")
        resolver.close("on-net2")
        resolver.loop.call_soon_threadsafe(resolver.loop.stop)  # no watch left retrying a removed etcd


def test_aliases_resolve_on_their_network_and_an_alias_shared_answers_every_holder():
    one = Endpoint("e" * 64, NET1, "db-1", "10.0.0.5/32", "ee:ee:ee:ee:ee:ee", 500, "", ("db", "0123456789ab"))
    two = Endpoint("f" * 64, NET1, "db-2", "10.0.0.6/32", "ee:ee:ee:ee:ee:ee", 600, "", ("db",))
    records = Records.from_entries({**ENTRIES, one.key: asdict(one), two.key: asdict(two)})
    assert records.resolve("db", [NET1]) == ["10.0.0.5", "10.0.0.6"]
    assert records.resolve("0123456789ab.my_net", [NET1]) == records.resolve("db-1", [NET1]) == ["10.0.0.5"]
    assert records.resolve("db", [NET2]) is None
    assert records.name_of("10.0.0.6", [NET1]) == "db-2.my_net"  # PTR: the container's own name
