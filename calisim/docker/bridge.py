"""Docker's default `bridge` network, as dockerd makes it on every host: the Linux bridge docker0
with 172.17.0.1/16, masquerade for what leaves it (`-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE`)
and forwarding to and from it (Docker's FORWARD rules); a container without `--net` gets a veth
pair (host end `veth` + 7 hex digits on docker0, inner end `eth0`, MAC 02:42 + its IPv4 address),
the lowest free address from .2 and a default route via 172.17.0.1.  Such a container is not a
Calico endpoint: it reaches other hosts through its host's NAT, has no embedded DNS (Docker gives
none on the default bridge) and is not in the cluster store.  All of it in the host's network
namespace (dockerd's), never the machine's."""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import subprocess

from ..datastore.resources.docker import Endpoint
from .errors import DockerError
from .netns import ROUTE_PROTOCOL, in_namespace, route_socket

NAME = "docker0"
SUBNET = ipaddress.ip_network("172.17.0.0/16")
GATEWAY = SUBNET[1]
RULES = [("nat", "POSTROUTING", ["-s", str(SUBNET), "!", "-o", NAME, "-j", "MASQUERADE"]),
         ("filter", "FORWARD", ["-o", NAME, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]),
         ("filter", "FORWARD", ["-i", NAME, "!", "-o", NAME, "-j", "ACCEPT"]),
         ("filter", "FORWARD", ["-i", NAME, "-o", NAME, "-j", "ACCEPT"])]


def in_a_host() -> bool:
    """Whether this process is in an emulated host's network namespace: calisim's sandbox is set
    (CALISIM_SANDBOX, its namespace's inode, as calisim.emulation.sandbox sets it) and this is
    not that namespace.  Never the machine's own, where docker0 and NAT rules must not go."""
    sandbox = os.environ.get("CALISIM_SANDBOX", "")
    return bool(sandbox) and sandbox != str(os.stat("/proc/self/ns/net").st_ino)


def set_up() -> None:
    """docker0 with its address, up, and Docker's NAT and forwarding rules (each added once)."""
    from pyroute2 import IPRoute

    if not in_a_host():
        raise DockerError("calisim's dockerd runs only in an emulated host: it makes docker0 and NAT rules there")

    with IPRoute() as ipr:
        if not ipr.link_lookup(ifname=NAME):
            ipr.link("add", ifname=NAME, kind="bridge")
        (index,) = ipr.link_lookup(ifname=NAME)
        if not ipr.get_addr(index=index, family=socket.AF_INET):
            ipr.addr("add", index=index, address=str(GATEWAY), prefixlen=SUBNET.prefixlen)
        ipr.link("set", index=index, state="up")
    for table, chain, rule in RULES:
        if subprocess.run(["iptables", "-t", table, "-C", chain, *rule], capture_output=True).returncode != 0:
            subprocess.run(["iptables", "-t", table, "-A", chain, *rule], capture_output=True, check=True)


def lowest_free(taken: set[str]) -> str:
    """The built-in IPAM's choice: the lowest address not in use (a freed one is reused at once)."""
    return next(str(a) for a in SUBNET.hosts() if a != GATEWAY and str(a) not in taken)


def host_end(endpoint: Endpoint) -> str:
    return "veth" + endpoint.id[:7]


def connect(network_id: str, container: str, pid: int, taken: set[str]) -> Endpoint:
    """A veth pair from docker0 into the namespace of process pid, addressed and routed as dockerd does."""
    from pyroute2 import IPRoute

    address = lowest_free(taken)
    mac = "02:42:" + ":".join(f"{byte:02x}" for byte in ipaddress.ip_address(address).packed)
    endpoint = Endpoint(secrets.token_hex(32), network_id, container, f"{address}/{SUBNET.prefixlen}", mac, pid)
    peer = "vethp" + endpoint.id[:7]
    with IPRoute() as ipr:
        ipr.link("add", ifname=host_end(endpoint), kind="veth", peer=peer)
        (outer,) = ipr.link_lookup(ifname=host_end(endpoint))
        try:
            (bridge,) = ipr.link_lookup(ifname=NAME)
            ipr.link("set", index=outer, master=bridge, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], net_ns_pid=pid)
            with IPRoute(fileno=in_namespace(pid, route_socket).detach()) as inside:
                (index,) = inside.link_lookup(ifname=peer)
                inside.link("set", index=index, ifname="eth0", address=mac)
                inside.addr("add", index=index, address=address, prefixlen=SUBNET.prefixlen)
                inside.link("set", index=index, state="up")
                inside.route("add", dst="0.0.0.0/0", gateway=str(GATEWAY), oif=index, proto=ROUTE_PROTOCOL)
        except Exception as error:
            ipr.link("del", index=outer)
            raise DockerError(f"failed to connect {container} to {NAME}: {error}") from None
    return endpoint


def disconnect(endpoint: Endpoint) -> None:
    """The veth pair goes (its inner end with it)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=host_end(endpoint)):
            ipr.link("del", index=index)
