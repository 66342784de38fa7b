"""The seed's two machines: host1 = 192.168.3.229/24 and host2 = 192.168.3.228/24 on one segment,
with etcd running on host1 (as in the walk-through, `etcd://192.168.3.229:2379`)."""

from calisim.topology import CalicoTopo


class TwoHostTopo(CalicoTopo):
    name = "two_host"
    etcd_host = "host1"

    def build(self) -> None:
        lan = self.add_segment("s1")
        self.add_calico_host("host1", "192.168.3.229/24", lan)
        self.add_calico_host("host2", "192.168.3.228/24", lan)


def topology(hosts: int | None = None) -> TwoHostTopo:
    if hosts not in (None, 2):
        raise ValueError("the two_host topology has exactly 2 hosts")
    return TwoHostTopo()
