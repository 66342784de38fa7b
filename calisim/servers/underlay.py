"""The underlay of real servers: one L2 segment, 198.18.0.0/24 as simulated servers have, made of
VXLAN devices joining the controller's sandbox and each server's sandbox.

Each device is created from its machine's own network namespace straight into the sandbox's
(``ip link add NAME netns PID type vxlan``): its UDP socket lives on the machine, where the
uplink is, while the device itself never exists in the machine's namespace.  Every sandbox sends
flooded frames to every other machine (head-end replication: one all-zeros fdb entry a peer);
one VNI a run, on port 14789 (containerlab's: 4789 is often filtered), so the runs of several
users on the same machines keep apart.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from .links import VXLAN_OVERHEAD

PORT = 14789
FLOOD = "00:00:00:00:00:00"  # the fdb entry every unknown or broadcast frame follows
MIN_MTU = 1280  # an underlay below IPv6's minimum could not carry the lab's IPv6


@dataclass(frozen=True)
class UnderlayJoin:
    """One sandbox's VXLAN into the underlay: the device, made from the machine's namespace into
    the namespace of sandbox_pid, sending to the peers' machine addresses, holding address."""

    device: str
    sandbox_pid: int
    address: str  # its underlay address with prefix, 198.18.0.N/24
    vni: int
    mtu: int
    peers: tuple[str, ...]  # the other machines' addresses, as this machine reaches them

    def create_command(self) -> list[str]:
        """Run in the machine's network namespace: the device lands in the sandbox at once."""
        return ["ip", "link", "add", self.device, "netns", str(self.sandbox_pid), "mtu", str(self.mtu),
                "type", "vxlan", "id", str(self.vni), "dstport", str(PORT)]

    def inside_commands(self) -> list[list[str]]:
        """Run anywhere on the machine: the fdb entries, address and state, in the sandbox's namespace."""
        inside = ["nsenter", "-t", str(self.sandbox_pid), "-n", "--"]
        return [*([*inside, "bridge", "fdb", "append", FLOOD, "dev", self.device, "dst", peer] for peer in self.peers),
                [*inside, "ip", "addr", "add", self.address, "dev", self.device],
                [*inside, "ip", "link", "set", self.device, "up"]]


def new_vni() -> int:
    """A run's VNI, drawn at random from VXLAN's 24 bits (0 left out): two runs on one machine
    sharing a VNI would be refused by the kernel, not mixed."""
    return 1 + secrets.randbelow(2**24 - 1)


def underlay_mtu(uplink_mtus: list[int]) -> int:
    """The underlay's MTU: the smallest uplink's, less the VXLAN that carries it; ValueError if too small."""
    mtu = min(uplink_mtus) - VXLAN_OVERHEAD
    if mtu < MIN_MTU:
        raise ValueError(f"an uplink's MTU of {min(uplink_mtus)} leaves the underlay {mtu} bytes, below {MIN_MTU}")
    return mtu


@dataclass(frozen=True)
class Route:
    """How a machine reaches an address: by which device, from which of its addresses."""

    device: str
    source: str
    local: bool = False  # the address is the machine's own

    @classmethod
    def parse(cls, route_get_json: str) -> "Route":
        """`ip -j route get ADDRESS`'s answer."""
        found = json.loads(route_get_json)[0]
        return cls(found["dev"], found["prefsrc"], found.get("type") == "local")


def link_mtu(link_show_json: str) -> int:
    """`ip -j link show DEVICE`'s MTU."""
    return int(json.loads(link_show_json)[0]["mtu"])
