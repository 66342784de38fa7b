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

from .errors import DockerError

ROUTE_PROTOCOL = 3  # "boot", as `ip route add` and libnetwork leave it
IFA_F_NODAD = 0x02
CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0
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


def route_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)


def configure_container_interface(sandbox_pid: int, joined: dict, address: str, mac: str, address6: str = "") -> None:
    """Move the Join's interface into the sandbox, rename it, address it, add the routes."""
    from pyroute2 import IPRoute

    from pyroute2 import NetlinkError

    source = joined["InterfaceName"]["SrcName"]
    prefix = joined["InterfaceName"]["DstPrefix"]
    with IPRoute() as ipr:
        (index,) = ipr.link_lookup(ifname=source) or [None]
        if index is None:
            raise DockerError(f"the driver did not create interface {source}")
        ipr.link("set", index=index, net_ns_pid=sandbox_pid)
    with IPRoute(fileno=in_namespace(sandbox_pid, route_socket).detach()) as inside:
        (index,) = inside.link_lookup(ifname=source)
        taken = {link.get_attr("IFLA_IFNAME") for link in inside.get_links()}
        name = next(f"{prefix}{n}" for n in range(len(taken) + 1) if f"{prefix}{n}" not in taken)  # as libnetwork
        inside.link("set", index=index, ifname=name, address=mac)
        ip = ipaddress.ip_interface(address)
        inside.addr("add", index=index, address=str(ip.ip), prefixlen=32)
        if address6:  # nodad: usable at once, as the /32 is
            inside.addr("add", index=index, address=address6.split("/")[0], prefixlen=128, flags=IFA_F_NODAD)
        inside.link("set", index=index, state="up")
        routes = [{"dst": route["Destination"], "scope": "link"} if route.get("RouteType") == 1
                  else {"dst": route["Destination"], "gateway": route["NextHop"]}
                  for route in joined.get("StaticRoutes") or []]
        # The sandbox's gateway is its first endpoint's, as libnetwork keeps one gateway a sandbox.
        for family, gateway, wanted in ((socket.AF_INET, joined.get("Gateway"), True),
                                        (socket.AF_INET6, joined.get("GatewayIPv6"), bool(address6))):
            if gateway and wanted and not inside.get_default_routes(family=family):
                routes.append({"dst": "0.0.0.0/0" if family == socket.AF_INET else "::/0", "gateway": gateway})
        for route in routes:
            try:
                inside.route("add", oif=index, proto=ROUTE_PROTOCOL, **route)
            except NetlinkError as error:  # a second network's link route: the first endpoint's stays
                if error.code != errno.EEXIST:
                    raise


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

