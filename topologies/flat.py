"""N Calico hosts, host1..hostN, on one segment of 172.16.0.0/16 (outside the 192.168.0.0/16
default pool and 10.0.0.0/8, so host addresses never collide with workload pools); for IPv6,
hostN also has fd00:172:16::N/64 (N's decimal digits as the last group).

With ``--route-reflectors K``, hosts rr1..rrK (not Calico nodes) sit on the same segment at
172.16.254.1..K and fd00:172:16::254:1..K for `routereflector run`; ``--start-nodes`` then sets the
cluster up as Calico's route reflector docs say: every reflector running (with --ip6: meshed and
serving clients over IPv6 too), the node-to-node mesh off, a global bgpPeer per reflector address
(same AS as the nodes).  A node started with --ip6 is then a client over IPv6 as well."""

import ipaddress

from calisim.datastore import keys
from calisim.emulation.topology import CalicoTopo

from . import Option

SUBNET = ipaddress.ip_network("172.16.0.0/16")
GATEWAY = str(SUBNET[-2])  # a default route, as every Calico host has (proxy ARP needs a route to 169.254.1.1)
MAX_HOSTS = 1000
REFLECTORS = ipaddress.ip_network("172.16.254.0/24")
MAX_REFLECTORS = 10
OPTIONS = {"hosts": Option(int, "Calico hosts, 1-1000 (default 3)"),
           "route_reflectors": Option(int, f"route reflector hosts rr1..rrK at 172.16.254.1..K, 0-{MAX_REFLECTORS} "
                                           "(default 0: a node-to-node mesh)", metavar="K")}


def reflector_ip(index: int) -> str:
    return str(REFLECTORS[index])


def reflector_ip6(index: int) -> str:
    """rrK's IPv6 address: its IPv4 address's last two numbers as groups (fd00:172:16::254:K)."""
    return f"fd00:172:16::254:{index}"


class FlatTopo(CalicoTopo):
    name = "flat"
    etcd_host = "host1"

    def build(self, hosts: int = 3, route_reflectors: int = 0) -> None:
        self.reflector_count = route_reflectors
        lan = self.add_segment("s1")
        for index in range(1, hosts + 1):
            self.add_calico_host(f"host{index}", f"{SUBNET[index]}/{SUBNET.prefixlen}", lan, default_route=GATEWAY,
                                 ip6=f"fd00:172:16::{index}/64")
        for index in range(1, route_reflectors + 1):
            self.add_reflector_host(f"rr{index}", f"{reflector_ip(index)}/{SUBNET.prefixlen}", lan,
                                    default_route=GATEWAY)
            self.add_ipv6(f"rr{index}", lan, f"{reflector_ip6(index)}/64")

    def reflector_run_command(self, host: str) -> str:
        index = int(host.removeprefix("rr"))
        return f"routereflector run --ip {reflector_ip(index)} --ip6 {reflector_ip6(index)}"

    def after_node_run(self) -> list[tuple[str, str]]:
        if not self.reflector_count:
            return []
        indices = range(1, self.reflector_count + 1)
        peers = ", ".join(f"{{apiVersion: v1, kind: bgpPeer, metadata: {{scope: global, peerIP: '{ip}'}}, "
                          f"spec: {{asNumber: {keys.DEFAULT_AS}}}}}"
                          for i in indices for ip in (reflector_ip(i), reflector_ip6(i)))
        return [*((f"rr{i}", self.reflector_run_command(f"rr{i}")) for i in indices),
                ("host1", "calicoctl config set nodeToNodeMesh off"),
                ("host1", f"echo '[{peers}]' | calicoctl create -f -")]


def topology(hosts: int | None = None, route_reflectors: int | None = None) -> FlatTopo:
    count = 3 if hosts is None else hosts
    if not 1 <= count <= MAX_HOSTS:
        raise ValueError(f"the flat topology takes 1 to {MAX_HOSTS} hosts, not {count}")
    reflectors = route_reflectors or 0
    if not 0 <= reflectors <= MAX_REFLECTORS:
        raise ValueError(f"the flat topology takes 0 to {MAX_REFLECTORS} route reflectors, not {reflectors}")
    return FlatTopo(hosts=count, route_reflectors=reflectors)
