"""Calico hosts on two subnets joined by a router that knows only the host subnets: with
``--hosts-per-subnet N`` (default 1) host1..hostN = 192.168.1.10, .11, ... and the next N =
192.168.2.10, .11, ...; router r1 = .1 on both.  Workload blocks are unknown to r1, so only
encapsulated traffic (an IPIP pool) crosses it; a plain pool's packets die there, and a
cross-subnet pool is encapsulated only toward the other subnet.  etcd runs in host1; BGP
between the hosts is multihop through r1.  Behind r1 too: ext1 = 198.51.100.10/24, a machine
outside the cluster (nat-outgoing's Internet).  IPv6: the subnets are fd00:192:168:1::/64 and
fd00:192:168:2::/64 (hosts ::10, ::11, ..., r1 ::1, the hosts' IPv6 default route), and ext1 is
2001:db8:100::10/64 behind r1's 2001:db8:100::1 (IPv6's documentation prefix, as 198.51.100.0/24
is IPv4's): the IPv6 Internet of nat-outgoing.  r1 routes the hosts' subnets only, never a
workload block of either version."""

from calisim.emulation.topology import CalicoTopo

from . import Option

FIRST_HOST = 10
EXT1_IPV6_NETWORK = "2001:db8:100::"  # the outside segment's IPv6 /64 (RFC 3849's documentation prefix)
MAX_HOSTS_PER_SUBNET = 254 - FIRST_HOST + 1
OPTIONS = {"hosts_per_subnet": Option(int, "Calico hosts on each of the two subnets, "
                                           f"1-{MAX_HOSTS_PER_SUBNET} (default 1)")}


class RoutedTopo(CalicoTopo):
    name = "routed"
    etcd_host = "host1"

    def build(self, hosts_per_subnet: int = 1) -> None:
        left, right, outside = self.add_segment("s1"), self.add_segment("s2"), self.add_segment("s3")
        self.add_router("r1", {left: "192.168.1.1/24", right: "192.168.2.1/24", outside: "198.51.100.1/24"})
        for side, segment in enumerate((left, right)):
            self.add_ipv6("r1", segment, f"fd00:192:168:{side + 1}::1/64")
        self.add_ipv6("r1", outside, f"{EXT1_IPV6_NETWORK}1/64")
        self.add_outside_host("ext1", "198.51.100.10/24", outside, default_route="198.51.100.1")
        self.add_ipv6("ext1", outside, f"{EXT1_IPV6_NETWORK}10/64", default_route=f"{EXT1_IPV6_NETWORK}1")
        for side, segment in enumerate((left, right)):
            for index in range(hosts_per_subnet):
                number = side * hosts_per_subnet + index + 1
                self.add_calico_host(f"host{number}", f"192.168.{side + 1}.{FIRST_HOST + index}/24", segment,
                                     default_route=f"192.168.{side + 1}.1")
                self.add_ipv6(f"host{number}", segment, f"fd00:192:168:{side + 1}::{FIRST_HOST + index}/64",
                              default_route=f"fd00:192:168:{side + 1}::1")


def topology(hosts_per_subnet: int | None = None) -> RoutedTopo:
    count = 1 if hosts_per_subnet is None else hosts_per_subnet
    if not 1 <= count <= MAX_HOSTS_PER_SUBNET:
        raise ValueError(f"the routed topology takes 1 to {MAX_HOSTS_PER_SUBNET} hosts per subnet, not {count}")
    return RoutedTopo(hosts_per_subnet=count)
