"""IPIP encapsulation for tunl0, one route model for every backend (Calico's):
`<remote block> via <remote host> dev tunl0 onlink` (installed by BIRD), the host's tunnel
address on tunl0.

Backends, best first (platform.md):
* ``kernel``: the kernel's ipip module, where the machine has it (a user's ordinary machine).
* ``userspace``: tunl0 is a TUN device; packets the kernel routes into it are sent to the
  route's gateway through a raw protocol-4 socket (the kernel adds the outer header), and
  protocol-4 packets addressed to this host are unwrapped and written back into tunl0.
  About 20x slower than the kernel, but it needs nothing the machine lacks.
(The eBPF backend of the issue is still to come.)
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import socket
import struct
import subprocess
import threading
import time

TUNNEL = "tunl0"
MTU = 1440  # Calico's default for IPIP
IPPROTO_IPIP = 4
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
GATEWAY_CACHE_SECONDS = 1.0
log = logging.getLogger("calico-ipip")


def kernel_ipip_available() -> bool:
    """Probe once, in a throwaway namespace, whether `type ipip` links can be made here."""
    probe = subprocess.run(["unshare", "--net", "ip", "link", "add", "name", "probe0", "type", "ipip"],
                           capture_output=True)
    return probe.returncode == 0


def choose_backend(requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    return "kernel" if kernel_ipip_available() else "userspace"


def set_tunnel_address(address: ipaddress.IPv4Address | None) -> None:
    """tunl0 up with MTU 1440 and exactly this /32 (Felix's IpInIpTunnelAddr)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=TUNNEL)[0]
        ipr.link("set", index=index, mtu=MTU, state="up")
        for existing in ipr.get_addr(index=index, family=2):
            if address is None or existing.get_attr("IFA_ADDRESS") != str(address):
                ipr.addr("del", index=index, address=existing.get_attr("IFA_ADDRESS"), prefixlen=existing["prefixlen"])
        if address is not None and not ipr.get_addr(index=index, address=str(address)):
            ipr.addr("add", index=index, address=str(address), prefixlen=32)


class KernelTunnel:
    name = "kernel"

    def start(self, host_ip: str) -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=TUNNEL):
                ipr.link("add", ifname=TUNNEL, kind="ipip", ipip_local="0.0.0.0", ipip_remote="0.0.0.0")

    def stop(self) -> None:
        """The kernel's tunl0 belongs to the ipip module; it goes with the namespace."""


class UserspaceTunnel:
    """tunl0 as a TUN device, encapsulating and decapsulating in two threads."""

    name = "userspace"

    def __init__(self) -> None:
        self._tun: int | None = None
        self._raw: socket.socket | None = None
        self._gateways: dict[str, tuple[str | None, float]] = {}
        self._running = False

    def start(self, host_ip: str) -> None:
        self._tun = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(self._tun, TUNSETIFF, struct.pack("16sH", TUNNEL.encode(), IFF_TUN | IFF_NO_PI))
        self._raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
        self._raw.bind((host_ip, 0))
        self._running = True
        for target, name in ((self._encapsulate, "ipip-out"), (self._decapsulate, "ipip-in")):
            threading.Thread(target=target, name=name, daemon=True).start()

    def _gateway(self, ipr, destination: str) -> str | None:
        """The gateway of the kernel's route to destination (BIRD's `via <host> dev tunl0 onlink`)."""
        cached = self._gateways.get(destination)
        if cached and time.monotonic() - cached[1] < GATEWAY_CACHE_SECONDS:
            return cached[0]
        routes = ipr.route("get", dst=destination)
        gateway = routes[0].get_attr("RTA_GATEWAY") if routes else None
        self._gateways[destination] = (gateway, time.monotonic())
        return gateway

    def _encapsulate(self) -> None:
        """Read what the kernel routed into tunl0, send it to the route's gateway. One bad packet
        (a route gone between the kernel's lookup and ours) must not stop the tunnel."""
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            while self._running:
                try:
                    packet = os.read(self._tun, 65535)
                except OSError:
                    return  # tunl0 closed: stopping
                if len(packet) < 20 or packet[0] >> 4 != 4:
                    continue
                destination = socket.inet_ntoa(packet[16:20])
                try:
                    gateway = self._gateway(ipr, destination)
                    if gateway:
                        self._raw.sendto(packet, (gateway, 0))
                except Exception as error:  # noqa: BLE001 - logged; the next packet is tried afresh
                    log.warning("could not encapsulate a packet to %s: %s", destination, error)
                    self._gateways.pop(destination, None)

    def _decapsulate(self) -> None:
        """Unwrap protocol-4 packets addressed to this host into tunl0; errors are per packet."""
        while self._running:
            try:
                outer = self._raw.recv(65535)
            except OSError as error:
                if not self._running:
                    return
                log.warning("raw IPIP socket: %s", error)
                continue
            inner = outer[(outer[0] & 0x0F) * 4:]
            if len(inner) >= 20 and inner[0] >> 4 == 4:
                try:
                    os.write(self._tun, inner)
                except OSError as error:
                    log.warning("could not deliver a decapsulated packet: %s", error)

    def stop(self) -> None:
        self._running = False
        for closer in (lambda: self._raw and self._raw.close(), lambda: self._tun is not None and os.close(self._tun)):
            try:
                closer()
            except OSError:
                pass


BACKENDS = {"kernel": KernelTunnel, "userspace": UserspaceTunnel}
