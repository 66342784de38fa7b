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


def configure_container_interface(sandbox_pid: int, joined: dict, address: str, mac: str, address6: str = "") -> None:
    """Move the Join's interface into the sandbox, rename it, address it, add the routes (libnetwork's
    order), the sandbox's side in one batch of requests."""
    source = joined["InterfaceName"]["SrcName"]
    with open(f"/proc/{sandbox_pid}/ns/net") as namespace, Rtnl() as host:
        try:
            host.request(netlink.into_namespace(source, namespace.fileno()))
        except NetlinkError as error:
            if error.errno == errno.ENODEV:
                raise DockerError(f"the driver did not create interface {source}") from None
            raise
    with Rtnl(in_namespace(sandbox_pid, route_socket)) as inside:
        taken = inside.links()
        index = taken[source]
        prefix = joined["InterfaceName"]["DstPrefix"]
        name = next(f"{prefix}{n}" for n in range(len(taken) + 1) if f"{prefix}{n}" not in taken)  # as libnetwork
        addresses = [netlink.add_address(index, ipaddress.IPv4Interface(f"{ipaddress.ip_interface(address).ip}/32"))]
        if address6:  # nodad: usable at once, as the /32 is
            addresses.append(netlink.add_address(index, ipaddress.IPv6Interface(f"{address6.split('/')[0]}/128"),
                                                 IFA_F_NODAD))
        routes = [netlink.add_route(index, ipaddress.ip_network(route["Destination"]),
                                    None if route.get("RouteType") == 1 else route["NextHop"], ROUTE_PROTOCOL)
                  for route in joined.get("StaticRoutes") or []]
        # The sandbox's gateway is its first endpoint's, as libnetwork keeps one gateway a sandbox.
        for family, gateway, wanted in ((socket.AF_INET, joined.get("Gateway"), True),
                                        (socket.AF_INET6, joined.get("GatewayIPv6"), bool(address6))):
            if gateway and wanted and not inside.has_default_route(family):
                everywhere = "0.0.0.0/0" if family == socket.AF_INET else "::/0"
                routes.append(netlink.add_route(index, ipaddress.ip_network(everywhere), gateway, ROUTE_PROTOCOL))
        steps = [netlink.rename(index, name, mac), *addresses, netlink.link(index, up=True)]
        answers = inside.batch([*steps, *routes])
    raise_first(answers[:len(steps)])
    raise_first(answers[len(steps):], errno.EEXIST)  # a second network's link route: the first endpoint's stays


def raise_first(codes: list[int], allowed: int = 0) -> None:
    """NetlinkError for the first of a batch's answers that is neither done (0) nor allowed."""
    refused = next((code for code in codes if code not in (0, allowed)), 0)
    if refused:
        raise NetlinkError(refused)


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

