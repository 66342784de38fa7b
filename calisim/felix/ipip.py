"""IPIP encapsulation for tunl0, one route model for every backend (Calico's):
`<remote block> via <remote host> dev tunl0 onlink` (installed by BIRD), the host's tunnel
address on tunl0.

Backends, best first (README "IPIP backends"):
* ``kernel``: the kernel's ipip module, where the machine has it (a user's ordinary machine).
* ``ebpf``: tunl0 is a persistent TUN device that nothing reads; tc programs built from
  calisim/felix/bpf/ipip.bpf.c (by `make setup`) add the outer header on tunl0's egress and strip it
  on the uplink's ingress, all in the kernel.  Needs kernel >= 6.7 (BPF_FIB_LOOKUP_SRC).
* ``userspace``: tunl0 is a TUN device; packets the kernel routes into it are sent to the
  route's gateway through a raw protocol-4 socket (the kernel adds the outer header), and
  protocol-4 packets addressed to this host are unwrapped and written back into tunl0.
  About 20x slower than the kernel, but it needs nothing the machine lacks.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import ipaddress
import logging
import os
import platform
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

TUNNEL = "tunl0"
MTU = 1440  # Calico's default for IPIP
IPPROTO_IPIP = 4
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
GATEWAY_CACHE_SECONDS = 1.0
BPF_OBJECT = Path(__file__).parent / "bpf" / "ipip.bpf.o"  # built by `make setup`
BPF_PROGRAMS = {"tunl_encap": "egress", "tunl_decap": "ingress"}  # program -> where it is attached
CLSACT_PARENT = {"ingress": "ffff:fff2", "egress": "ffff:fff3"}
NR_BPF = {"x86_64": 321, "aarch64": 280}
BPF_OBJ_GET = 7
log = logging.getLogger("calico-ipip")


@functools.cache
def kernel_ipip_available() -> bool:
    """Probe once, in a throwaway namespace, whether `type ipip` links can be made here (the
    node zygote does, so the nodes it forks need not: the answer is the machine's)."""
    probe = subprocess.run(["unshare", "--net", "ip", "link", "add", "name", "probe0", "type", "ipip"],
                           capture_output=True)
    return probe.returncode == 0


@functools.cache
def ebpf_available() -> bool:
    """Whether the built object loads here: tried once in a throwaway mount namespace, so the
    verifier and the kernel's helpers (bpf_fib_lookup with BPF_FIB_LOOKUP_SRC) are what decide."""
    if not BPF_OBJECT.exists() or not shutil.which("bpftool"):
        return False
    with tempfile.TemporaryDirectory(prefix="calisim-bpf-probe-") as directory:
        probe = subprocess.run(["unshare", "--mount", "sh", "-c",
                                'mount -t bpf bpf "$1" && bpftool prog loadall "$2" "$1/p"',
                                "probe", directory, str(BPF_OBJECT)], capture_output=True)
    return probe.returncode == 0


def choose_backend(requested: str = "auto") -> str:
    """The requested backend, or for auto the best this machine has: kernel, ebpf, userspace."""
    if requested != "auto":
        return requested
    if kernel_ipip_available():
        return "kernel"
    return "ebpf" if ebpf_available() else "userspace"


def make_tunnel(backend: str, state_dir: Path) -> "KernelTunnel | EbpfTunnel | UserspaceTunnel":
    """A tunnel of that backend; state_dir holds what it keeps (the eBPF pins)."""
    return EbpfTunnel(state_dir / "bpf") if backend == "ebpf" else BACKENDS[backend]()


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


def create_persistent_tun(name: str) -> None:
    """A TUN device that outlives the file descriptor that made it (nobody needs to read it)."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        os.close(fd)


def bpf_obj_get(path: Path) -> int:
    """A file descriptor for a pinned BPF object (the bpf(2) BPF_OBJ_GET command)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pathname = ctypes.create_string_buffer(os.fsencode(path))
    attr = ctypes.create_string_buffer(struct.pack("QII", ctypes.addressof(pathname), 0, 0))
    fd = libc.syscall(NR_BPF[platform.machine()], BPF_OBJ_GET, attr, len(attr.raw))
    if fd < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"BPF_OBJ_GET {path}: {os.strerror(error)}")
    return fd


def is_bpffs(path: Path) -> bool:
    with open("/proc/self/mountinfo") as mounts:
        return any(fields[4] == str(path) and fields[fields.index("-") + 1] == "bpf"
                   for fields in (line.split() for line in mounts))


class EbpfTunnel:
    """tunl0 as a persistent TUN plus calisim's tc programs (see calisim/felix/bpf/ipip.bpf.c).

    The programs are loaded with bpftool into a bpffs of this host's own (mounted on the
    node's state directory, not under /sys, which Mininet hosts remount), then attached with
    netlink.  They stay attached when the agent stops, as the kernel's tunl0 would."""

    name = "ebpf"

    def __init__(self, pin_dir: Path) -> None:
        self.pin_dir = pin_dir

    def start(self, host_ip: str) -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=TUNNEL):
                create_persistent_tun(TUNNEL)
            uplink = self._uplink(ipr, host_ip)
            programs = self._load()
            for program, fd in programs.items():
                direction = BPF_PROGRAMS[program]
                index = ipr.link_lookup(ifname=TUNNEL)[0] if direction == "egress" else uplink
                self._attach(ipr, index, direction, program, fd)

    @staticmethod
    def _uplink(ipr, host_ip: str) -> int:
        addresses = ipr.get_addr(family=socket.AF_INET, address=host_ip)
        if not addresses:
            raise OSError(f"no interface has the host address {host_ip}")
        return addresses[0]["index"]

    def _load(self) -> dict[str, int]:
        """Load the object afresh (a restarted agent replaces its programs); program -> fd."""
        self.pin_dir.mkdir(parents=True, exist_ok=True)
        if not is_bpffs(self.pin_dir):
            subprocess.run(["mount", "-t", "bpf", "bpf", str(self.pin_dir)], check=True, capture_output=True)
        pins = self.pin_dir / "ipip"
        if pins.exists():
            shutil.rmtree(pins)
        loaded = subprocess.run(["bpftool", "prog", "loadall", str(BPF_OBJECT), str(pins)],
                                capture_output=True, text=True)
        if loaded.returncode != 0:
            raise OSError(f"bpftool could not load {BPF_OBJECT}: {loaded.stderr.strip()[-500:]}")
        return {program: bpf_obj_get(pins / program) for program in BPF_PROGRAMS}

    @staticmethod
    def _attach(ipr, index: int, direction: str, program: str, fd: int) -> None:
        from pyroute2 import NetlinkError

        try:
            try:
                ipr.tc("add", "clsact", index)
            except NetlinkError as error:
                if error.code != 17:  # EEXIST: attached before, by an earlier start
                    raise
            ipr.tc("replace-filter", "bpf", index, ":1", fd=fd, name=program, parent=CLSACT_PARENT[direction],
                   classid=1, direct_action=True)
        finally:
            os.close(fd)

    def stop(self) -> None:
        """The programs stay attached, and tunl0 up: the dataplane outlives its agent."""


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


BACKENDS = {"kernel": KernelTunnel, "ebpf": EbpfTunnel, "userspace": UserspaceTunnel}
