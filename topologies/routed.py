"""Two Calico hosts on different subnets joined by a router that knows only the host subnets:
host1 = 192.168.1.10/24 and host2 = 192.168.2.10/24, router r1 = .1 on both.  Workload blocks
are unknown to r1, so only encapsulated traffic (an IPIP pool) crosses it; a plain pool's
packets die there.  etcd runs in host1; BGP between the hosts is multihop through r1.  Behind r1
too: ext1 = 198.51.100.10/24, a machine outside the cluster (nat-outgoing's Internet)."""

from calisim.emulation.topology import CalicoTopo

OPTIONS: dict = {}


class RoutedTopo(CalicoTopo):
    name = "routed"
    etcd_host = "host1"

    def build(self) -> None:
        left, right, outside = self.add_segment("s1"), self.add_segment("s2"), self.add_segment("s3")
        self.add_router("r1", {left: "192.168.1.1/24", right: "192.168.2.1/24", outside: "198.51.100.1/24"})
        self.add_outside_host("ext1", "198.51.100.10/24", outside, default_route="198.51.100.1")
        self.add_calico_host("host1", "192.168.1.10/24", left, default_route="192.168.1.1")
        self.add_calico_host("host2", "192.168.2.10/24", right, default_route="192.168.2.1")


def topology() -> RoutedTopo:
    return RoutedTopo()
