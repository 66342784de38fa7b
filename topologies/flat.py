"""N Calico hosts, host1..hostN, on one segment of 172.16.0.0/16 (outside the 192.168.0.0/16
default pool and 10.0.0.0/8, so host addresses never collide with workload pools)."""

import ipaddress

from calisim.emulation.topology import CalicoTopo

from . import Option

SUBNET = ipaddress.ip_network("172.16.0.0/16")
GATEWAY = str(SUBNET[-2])  # a default route, as every Calico host has (proxy ARP needs a route to 169.254.1.1)
MAX_HOSTS = 1000
OPTIONS = {"hosts": Option(int, "Calico hosts, 1-1000 (default 3)")}


class FlatTopo(CalicoTopo):
    name = "flat"
    etcd_host = "host1"

    def build(self, hosts: int = 3) -> None:
        lan = self.add_segment("s1")
        for index in range(1, hosts + 1):
            self.add_calico_host(f"host{index}", f"{SUBNET[index]}/{SUBNET.prefixlen}", lan, default_route=GATEWAY)


def topology(hosts: int | None = None) -> FlatTopo:
    count = 3 if hosts is None else hosts
    if not 1 <= count <= MAX_HOSTS:
        raise ValueError(f"the flat topology takes 1 to {MAX_HOSTS} hosts, not {count}")
    return FlatTopo(hosts=count)
