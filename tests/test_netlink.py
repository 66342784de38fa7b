"""rtnetlink spoken directly: the messages' bytes (no root), then each request the plugin and
dockerd make, run in the session's private namespace and in a bare sandbox's, and read back with
iproute2's `ip -j` (emulation)."""

import errno
import ipaddress
import json
import socket
import struct
import subprocess

import pytest

from calisim import netlink
from calisim.docker.netns import in_namespace, start_sandbox
from calisim.netlink import NetlinkError, Rtnl, route_socket


def ip_json(*args: str, pid: int | None = None) -> list[dict]:
    inside = ["nsenter", "-t", str(pid), "-n", "--"] if pid else []
    return json.loads(subprocess.run([*inside, "ip", "-j", *args], capture_output=True, text=True,
                                     check=True).stdout or "[]")


def test_attributes_are_padded_to_four_bytes_and_read_back():
    packed = netlink.attribute(netlink.IFLA_IFNAME, b"cali0\0") + netlink.attribute(netlink.IFLA_ADDRESS, b"\xee" * 6)
    assert len(packed) == 2 * 12 and packed[:4] == struct.pack("=HH", 10, netlink.IFLA_IFNAME)
    assert netlink.attributes(packed, 0) == {netlink.IFLA_IFNAME: b"cali0\0", netlink.IFLA_ADDRESS: b"\xee" * 6}


def test_a_default_route_carries_no_destination_and_a_link_route_is_scoped_to_the_link():
    default = netlink.add_route(7, ipaddress.ip_network("0.0.0.0/0"), "169.254.1.1", 3)
    found = netlink.attributes(default.body, netlink.ROUTE.size)
    assert netlink.RTA_DST not in found and found[netlink.RTA_GATEWAY] == bytes([169, 254, 1, 1])
    assert struct.unpack("=i", found[netlink.RTA_OIF]) == (7,)
    link_route = netlink.add_route(7, ipaddress.ip_network("169.254.1.1/32"), None, 3)
    family, length, _, _, table, protocol, scope, kind, _ = netlink.ROUTE.unpack_from(link_route.body)
    assert (family, length, table, protocol, scope, kind) == (socket.AF_INET, 32, 254, 3, netlink.RT_SCOPE_LINK, 1)
    assert link_route.flags == netlink.NLM_F_CREATE | netlink.NLM_F_EXCL


@pytest.mark.emulation
def test_veth_up_and_gone_and_the_kernels_refusals():
    with Rtnl() as rtnl:
        rtnl.request(netlink.veth("nltesthost", "nltestpeer", "ee:ee:ee:ee:ee:ee"))
        try:
            with pytest.raises(NetlinkError) as exists:
                rtnl.request(netlink.veth("nltesthost", "nltestpeer", "ee:ee:ee:ee:ee:ee"))
            assert exists.value.errno == errno.EEXIST
            rtnl.request(netlink.link(name="nltesthost", up=True))
            (host,) = ip_json("link", "show", "nltesthost")
            (peer,) = ip_json("link", "show", "nltestpeer")
            assert "UP" in host["flags"] and "UP" not in peer["flags"] and peer["address"] == "ee:ee:ee:ee:ee:ee"
            link = rtnl.find("nltesthost")
            assert rtnl.links()["nltesthost"] == link and link.index == host["ifindex"] and link.flags & netlink.IFF_UP
            assert not rtnl.find("nltestpeer").flags & netlink.IFF_UP
        finally:
            rtnl.request(netlink.delete("nltesthost"))
        assert not ip_json("link", "show", "type", "veth")  # the peer went with it
        with pytest.raises(NetlinkError) as gone:
            rtnl.request(netlink.delete("nltesthost"))
        assert gone.value.errno == errno.ENODEV
        rtnl.delete_if_there("nltesthost")  # gone is fine there
        with pytest.raises(NetlinkError) as unknown:
            rtnl.find("nltesthost")
        assert unknown.value.errno == errno.ENODEV


@pytest.mark.emulation
def test_into_a_namespace_then_a_batch_runs_in_order_and_answers_each():
    sandbox = start_sandbox("nltest")
    try:
        with Rtnl() as rtnl, open(f"/proc/{sandbox.pid}/ns/net") as namespace:
            rtnl.request(netlink.veth("nltesthost", "nltestpeer", "ee:ee:ee:ee:ee:ee"))
            rtnl.request(netlink.into_namespace("nltestpeer", namespace.fileno()))
        assert "nltestpeer" not in {link["ifname"] for link in ip_json("link", "show")}
        with Rtnl(in_namespace(sandbox.pid, route_socket)) as inside:
            index = inside.links()["nltestpeer"].index
            gateway, everywhere = ipaddress.ip_network("169.254.1.1/32"), ipaddress.ip_network("0.0.0.0/0")
            assert not inside.has_default_route(socket.AF_INET)
            answers = inside.batch([netlink.rename(index, "cali0", "ee:ee:ee:ee:ee:01"),
                                    netlink.add_address(index, ipaddress.ip_interface("10.10.0.5/32")),
                                    netlink.link(index, up=True),
                                    netlink.add_route(index, gateway, None, 3),
                                    netlink.add_route(index, everywhere, "169.254.1.1", 3),
                                    netlink.add_route(index, gateway, None, 3)])
            assert answers == [0, 0, 0, 0, 0, errno.EEXIST]  # each answered, the repeated route refused
            assert inside.has_default_route(socket.AF_INET) and not inside.has_default_route(socket.AF_INET6)
        (link,) = ip_json("addr", "show", "cali0", pid=sandbox.pid)
        assert "UP" in link["flags"] and link["address"] == "ee:ee:ee:ee:ee:01"
        assert [(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"] == [("10.10.0.5", 32)]
        routes = {(r["dst"], r.get("gateway"), r.get("protocol"), r.get("scope"))
                  for r in ip_json("-d", "route", pid=sandbox.pid)}
        assert routes == {("default", "169.254.1.1", "boot", "global"), ("169.254.1.1", None, "boot", "link")}
    finally:
        sandbox.kill()
        sandbox.wait()
        subprocess.run(["ip", "link", "del", "nltesthost"], capture_output=True)


@pytest.mark.emulation
def test_an_address_the_kernel_adds_later_is_reported_and_none_within_the_timeout_is_none():
    with Rtnl() as rtnl:
        rtnl.request(netlink.veth("nltesthost", "nltestpeer", "ee:ee:ee:ee:ee:ee"))
        try:
            rtnl.subscribe(netlink.RTNLGRP_IPV6_IFADDR)
            rtnl.request(netlink.link(name="nltesthost", up=True))
            index = rtnl.find("nltesthost").index
            assert rtnl.address_of(index, socket.AF_INET6, netlink.RT_SCOPE_LINK, 0.2) is None  # no carrier yet
            rtnl.request(netlink.link(name="nltestpeer", up=True))
            found = rtnl.address_of(index, socket.AF_INET6, netlink.RT_SCOPE_LINK, 5.0)
            (host,) = ip_json("-6", "addr", "show", "nltesthost")
            assert found is not None and ipaddress.ip_address(found).is_link_local
            assert found in [a["local"] for a in host["addr_info"]]
        finally:
            rtnl.request(netlink.delete("nltesthost"))
