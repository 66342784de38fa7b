"""Links between nodes on different servers: VXLAN, one VNI a link.

Mininet's cluster edition tunnels with gretap (``RemoteGRELink``) or ``ssh -w`` taps; this
kernel has no GRE, and VXLAN is what Distrinet and containerlab use.  Each end is made on its
server (in the server's sandbox, never a real machine's own namespace) with iproute2 over the
server's ssh, so the same commands serve simulated and real servers.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

VXLAN_PORT = 4789  # IANA's VXLAN port
VXLAN_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14


@dataclass(frozen=True)
class VxlanEnd:
    """One end of a cross-server link: the device made on a server between its underlay
    address (local) and the other server's (remote)."""

    device: str
    vni: int
    local: str
    remote: str
    underlay_mtu: int = 1500

    @property
    def mtu(self) -> int:
        """The largest inner packet the underlay carries unfragmented: Calico's IPIP (20 more)
        or VXLAN (50 more) inside must take their share from this, not from the underlay's."""
        return self.underlay_mtu - VXLAN_OVERHEAD

    def create_commands(self, netns_pid: int | None = None) -> list[str]:
        """iproute2 commands for the server: the device, its MTU, moved into the node whose
        namespace holds netns_pid (left in the server's namespace when None), up."""
        device = shlex.quote(self.device)
        commands = [f"ip link add {device} type vxlan id {self.vni} local {self.local} remote {self.remote} "
                    f"dstport {VXLAN_PORT}",
                    f"ip link set {device} mtu {self.mtu}"]
        if netns_pid is not None:
            commands.append(f"ip link set {device} netns {netns_pid}")
            return commands + [f"nsenter -t {netns_pid} -n ip link set {device} up"]
        return commands + [f"ip link set {device} up"]


def link_ends(device: str, vni: int, left: str, right: str, underlay_mtu: int = 1500) -> tuple[VxlanEnd, VxlanEnd]:
    """Both ends of one link between the servers at underlay addresses left and right."""
    return (VxlanEnd(device, vni, left, right, underlay_mtu), VxlanEnd(device, vni, right, left, underlay_mtu))
