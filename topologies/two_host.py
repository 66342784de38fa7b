"""The seed's two machines: host1 = 192.168.3.229/24 and host2 = 192.168.3.228/24 on one segment,
with etcd running on host1 (as in the walk-through, `etcd://192.168.3.229:2379`).  For IPv6 they
also have fd00:3::229/64 and fd00:3::228/64 (outside the default pool fd80:24e2:f998:72d6::/64)."""

from calisim.emulation.topology import CalicoTopo

OPTIONS: dict = {}

GATEWAY = "192.168.3.1"


class TwoHostTopo(CalicoTopo):
    name = "two_host"
    etcd_host = "host1"

    def build(self) -> None:
        lan = self.add_segment("s1")
        # Like the seed's machines, the hosts have a default route (to the LAN's gateway): proxy ARP
        # answers a workload's ARP for 169.254.1.1 only when the host has a route to it.
        self.add_calico_host("host1", "192.168.3.229/24", lan, default_route=GATEWAY, ip6="fd00:3::229/64")
        self.add_calico_host("host2", "192.168.3.228/24", lan, default_route=GATEWAY, ip6="fd00:3::228/64")


def topology() -> TwoHostTopo:
    return TwoHostTopo()
