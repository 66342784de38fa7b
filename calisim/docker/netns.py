"""A container's network namespace as dockerd sets it up: entering it from a thread (for the
sockets dockerd keeps there), moving the network driver's interface in and configuring it as
Join answered, and the bare sandbox of the CNM flow's hand driver (`python -m calisim.docker.cnm`).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import errno
import ipaddress
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, TypeVar

from .. import netlink
from ..netlink import NetlinkError, Rtnl, route_socket
from .errors import DockerError

ROUTE_PROTOCOL = 3  # "boot", as `ip route add` and libnetwork leave it
IFA_F_NODAD = 0x02
CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


def in_namespace(pid: int, make: Callable[[], T]) -> T:
    """make() run inside the network namespace of process pid, on a thread of its own: setns(2)
    moves only the calling thread, and a socket stays in the namespace it was made in.  (pyroute2's
    netns= forks the daemon instead, and a fork costs more with every container's threads: 9 ms
    with one thread, 25 ms with 800.)"""
    def entered() -> T:
        with open(f"/proc/{pid}/ns/net") as namespace:
            if libc.setns(namespace.fileno(), CLONE_NEWNET) != 0:
                error = ctypes.get_errno()
                raise OSError(error, f"setns into the network namespace of {pid}: {os.strerror(error)}")
        return make()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as once:
        return once.submit(entered).result()


Address = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def configure_container_interface(sandbox_pid: int, joined: dict, address: str, mac: str, address6: str = "") -> None:
    """Move the Join's interface into the sandbox and configure it: the /32 (and an IPv6 /128,
    nodad: usable at once, as the /32 is), the Join's static routes and gateways."""
    addresses = [(ipaddress.IPv4Interface(f"{ipaddress.ip_interface(address).ip}/32"), 0)]
    if address6:
        addresses.append((ipaddress.IPv6Interface(f"{address6.split('/')[0]}/128"), IFA_F_NODAD))
    routes = [(ipaddress.ip_network(route["Destination"]), None if route.get("RouteType") == 1 else route["NextHop"])
              for route in joined.get("StaticRoutes") or []]
    gateways = [gateway for gateway in (joined.get("Gateway"), joined.get("GatewayIPv6") if address6 else None)
                if gateway]
    move_and_configure(sandbox_pid, joined["InterfaceName"]["SrcName"], joined["InterfaceName"]["DstPrefix"], mac,
                       addresses, routes, gateways)


def move_and_configure(sandbox_pid: int, source: str, prefix: str, mac: str, addresses: list[tuple[Address, int]],
                       routes: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str | None]],
                       gateways: list[str]) -> None:
    """Move link source into the sandbox (by its namespace's descriptor) and configure it as
    libnetwork does, in its order: the prefix's first free name and mac, the addresses (each with
    its IFA_F_* flags), up, the routes (one the sandbox has already stays), and a default route
    through each gateway of a family the sandbox has none of yet (one gateway a sandbox: its
    first endpoint's).  The sandbox's side is one dump of its links and one batch of requests."""
    with open(f"/proc/{sandbox_pid}/ns/net") as namespace, Rtnl() as host:
        try:
            host.request(netlink.into_namespace(source, namespace.fileno()))
        except NetlinkError as error:
            if error.errno == errno.ENODEV:
                raise DockerError(f"the driver did not create interface {source}") from None
            raise
    with Rtnl(in_namespace(sandbox_pid, route_socket)) as inside:
        taken = inside.links()
        index = taken[source].index
        name = next(f"{prefix}{n}" for n in range(len(taken) + 1) if f"{prefix}{n}" not in taken)
        for gateway in gateways:
            version = ipaddress.ip_address(gateway).version
            if not inside.has_default_route(socket.AF_INET if version == 4 else socket.AF_INET6):
                routes = [*routes, (ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0"), gateway)]
        steps = [netlink.rename(index, name, mac), *(netlink.add_address(index, a, flags) for a, flags in addresses),
                 netlink.link(index, up=True)]
        answers = inside.batch([*steps, *(netlink.add_route(index, destination, gateway, ROUTE_PROTOCOL)
                                          for destination, gateway in routes)])
    netlink.raise_first_refusal(answers[:len(steps)])
    netlink.raise_first_refusal(answers[len(steps):], errno.EEXIST)  # a second network's link route: the first's stays


def start_sandbox(name: str, timeout: float = 10.0) -> subprocess.Popen:
    """A bare sandbox for the hand driver: a process holding new network, UTS and mount namespaces
    (hostname = name, lo up) and no image.  Returns once the process is in its own namespaces."""
    process = subprocess.Popen(["unshare", "--net", "--uts", "--mount", "--", "sh", "-c",
                                'hostname "$0" && ip link set lo up && exec sleep infinity', name],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    own = os.stat("/proc/self/ns/net").st_ino
    deadline = time.monotonic() + timeout
    while os.stat(f"/proc/{process.pid}/ns/net").st_ino == own or _comm(process.pid) != "sleep":
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise DockerError(f"the sandbox of {name} did not start")
        time.sleep(0.005)
    return process


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""

