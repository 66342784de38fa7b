"""The routed topology: its address plan (no root needed), then IPv6 across r1 on one live cluster
(the emulation tests run in order on it):

* IPv6 BGP between the hosts crosses r1 (multihop, the sessions' TCP seen on r1's link), each
  host routes the other's IPv6 blocks through r1, and r1 knows none, so IPv6 workload traffic
  between the subnets dies there, as a plain IPv4 pool's does (Calico has no IPv6 encapsulation);
* nat-outgoing for IPv6 on the wire at ext1's IPv6 address, with Calico 2.x's semantics (Felix 2.x
  masquerades a nat-outgoing IPv6 pool's traffic to outside every IPv6 pool, as for IPv4; calico/node
  v1.0's default IPv6 pool has nat-outgoing off, v1.1's on): off, ext1 sees the workload's own
  address and its answer never comes back; on, ext1 sees each host's own address and answers;
* a host endpoint given only host2's IPv6 address (no interfaceName) applies to the uplink holding
  it, for both versions: only what its profile allows gets in, the failsafe BGP port keeps the IPv6
  session (restarted across it), neighbour discovery still resolves, workloads' forwarded traffic
  is not its business.
"""


import pytest

import topologies
from calisim.emulation import Cluster, sandbox, wait_until

from tests.conftest import replay, running_daemons


def test_hosts_per_subnet_puts_both_kinds_of_neighbour_side_by_side():
    wide = topologies.load("routed", hosts_per_subnet=2)
    assert [wide.host_ip(h) for h in wide.calico_hosts()] == ["192.168.1.10", "192.168.1.11", "192.168.2.10", "192.168.2.11"]
    seed = topologies.load("routed")
    assert [seed.host_ip(h) for h in seed.calico_hosts()] == ["192.168.1.10", "192.168.2.10"]
    with pytest.raises(ValueError, match="1 to 245 hosts per subnet, not 0"):
        topologies.load("routed", hosts_per_subnet=0)


def test_ext1_is_dual_stack_behind_r1():
    seed = topologies.load("routed")
    assert seed.nodeInfo("ext1")["ipv6"] == [("s3", "2001:db8:100::10/64")]
    assert seed.nodeInfo("ext1")["ipv6_default_route"] == "2001:db8:100::1"
    assert ("s3", "2001:db8:100::1/64") in seed.nodeInfo("r1")["ipv6"]
    assert "ipv6_default_route" not in seed.nodeInfo("r1")  # r1 routes the subnets it is on, nothing else


EXT1 = "2001:db8:100::10"


@pytest.fixture(scope="module")
def routed(module_runs):
    """The routed cluster, no node started yet; the caller's namespace and processes as they were after it."""
    before, daemons = sandbox.snapshot(), running_daemons()
    with Cluster(topologies.load("routed")) as cluster:
        yield cluster
    assert running_daemons() == daemons, "processes left running"
    assert sandbox.snapshot() == before, "the caller's namespace changed"


BGP_ACROSS_R1 = r"""
r1$ (timeout 120 tcpdump -l -n -i r1-eth0 'ip6 and tcp port 179' > bgp6.txt 2> bgp6.err &)
within 20s r1$ grep -q 'listening on r1-eth0' bgp6.err
host1$ calicoctl node run --ip6 autodetect | grep -x 'Autodetected IPv6 address fd00:192:168:1::10/64'
host2$ calicoctl node run --ip6 autodetect | grep -x 'Autodetected IPv6 address fd00:192:168:2::10/64'
within 40s host1$ calicoctl node status | grep -E '^\| fd00:192:168:2::10 \| node-to-node mesh \| up +\| [0-9:]+ \| Established +\|$'
within 40s host2$ calicoctl node status | grep -E '^\| fd00:192:168:1::10 \| node-to-node mesh \| up +\| [0-9:]+ \| Established +\|$'
# The session crosses r1: host1 reaches host2's IPv6 address through it, and r1's link carries BGP's TCP.
host1$ ip -6 route get fd00:192:168:2::10 | grep -q 'via fd00:192:168:1::1 dev host1-eth0'
within 10s r1$ grep -E 'IP6 fd00:192:168:[12]::10\.[0-9]+ > fd00:192:168:[12]::10\.179: ' bgp6.txt
host1$ docker network create --ipv6 -d calico --ipam-driver calico-ipam v6net
host1$ docker run --net v6net --name w1 -tid busybox
host2$ docker run --net v6net --name w2 -tid busybox
# Each host routes the other's IPv6 block through r1 (BGP's next hop, the other host, resolved over r1).
within 30s host1$ ip -6 route show proto bird | grep -E '^fd80:24e2:f998:72d6:[0-9a-f:]+/122 via fd00:192:168:1::1 dev host1-eth0 '
within 30s host2$ ip -6 route show proto bird | grep -E '^fd80:24e2:f998:72d6:[0-9a-f:]+/122 via fd00:192:168:2::1 dev host2-eth0 '
# r1 knows no block, so IPv6 between the workloads dies there, as a plain IPv4 pool's traffic does.
r1$ ip -6 route | grep -c '^fd80:' | grep -x 0
host1! docker exec w1 ping -6 -c 2 -W 1 w2.v6net
"""


@pytest.mark.emulation
def test_ipv6_bgp_crosses_r1_and_its_routes_lead_there(routed):
    replay(routed, BGP_ACROSS_R1)


NAT_OUTGOING = r"""
ext1$ (timeout 120 tcpdump -l -n -i ext1-eth0 icmp6 > ext6.txt 2> ext6.err &)
within 20s ext1$ grep -q 'listening on ext1-eth0' ext6.err
# calico/node v1.0's default IPv6 pool: no nat-outgoing, so ext1 sees the pool's address and cannot answer it.
host1$ calicoctl get ipPool fd80:24e2:f998:72d6::/64 -o yaml | grep -x '  spec: {}'
host1! docker exec w1 ping -6 -c 2 -W 1 2001:db8:100::10
within 5s ext1$ grep -E 'IP6 fd80:24e2:f998:72d6:[0-9a-f:]+ > 2001:db8:100::10: ICMP6, echo request' ext6.txt
host1$ echo "{apiVersion: v1, kind: ipPool, metadata: {cidr: 'fd80:24e2:f998:72d6::/64'}, spec: {nat-outgoing: true}}" | calicoctl apply -f -
# Masqueraded to each host's own IPv6 address, answered (hop limit 64 - r1 - the host).
within 20s host1$ docker exec w1 ping -6 -c 1 -W 1 2001:db8:100::10 | grep -q 'ttl=62'
within 20s host2$ docker exec w2 ping -6 -c 1 -W 1 2001:db8:100::10 | grep -q 'ttl=62'
ext1$ (timeout 120 tcpdump -l -n -i ext1-eth0 icmp6 > natted.txt 2> natted.err &)
within 20s ext1$ grep -q 'listening on ext1-eth0' natted.err
host1$ docker exec w1 ping -6 -c 1 -W 1 2001:db8:100::10
host2$ docker exec w2 ping -6 -c 1 -W 1 2001:db8:100::10
within 5s ext1$ grep -E 'IP6 fd00:192:168:1::10 > 2001:db8:100::10: ICMP6, echo request' natted.txt
within 5s ext1$ grep -E 'IP6 fd00:192:168:2::10 > 2001:db8:100::10: ICMP6, echo request' natted.txt
ext1$ grep -c 'fd80:' natted.txt | grep -x 0
# A fresh workload's very first IPv6 packet out is masqueraded and answered (its gateway found by NDP at once).
host2$ docker run --rm --net v6net busybox ping -6 -c 1 -W 3 2001:db8:100::10 | grep -q '1 packets received'
"""


@pytest.mark.emulation
def test_ipv6_nat_outgoing_on_the_wire_at_ext1(routed):
    replay(routed, NAT_OUTGOING)


HOST_ENDPOINT = r"""
host2$ (setsid python -m http.server 80 --bind :: & setsid python -m http.server 8080 --bind :: &) > /dev/null 2>&1
within 10s host1$ timeout 2 bash -c 'echo > /dev/tcp/fd00:192:168:2::10/8080'
host1$ ping -6 -c 1 -W 1 fd00:192:168:2::10
host1$ calicoctl create -f - <<EOF
- apiVersion: v1
  kind: profile
  metadata: {name: web-host}
  spec: {ingress: [{action: allow, protocol: tcp, destination: {ports: [80]}}], egress: [{action: allow}]}
- apiVersion: v1
  kind: hostEndpoint
  metadata: {name: uplink, node: host2}
  spec: {expectedIPs: ['fd00:192:168:2::10'], profiles: [web-host]}
EOF
host1$ calicoctl get hostEndpoint -o wide | grep -E '^host2 +uplink +fd00:192:168:2::10 +web-host *$'
within 20s host1! timeout 2 bash -c 'echo > /dev/tcp/fd00:192:168:2::10/8080'
host1$ timeout 2 bash -c 'echo > /dev/tcp/fd00:192:168:2::10/80'
host1! ping -6 -c 1 -W 1 fd00:192:168:2::10
host1! timeout 2 bash -c 'echo > /dev/tcp/192.168.2.10/8080'
# Neighbour discovery passes: with host2's and r1's caches flushed, port 80 is still reached.
host2$ ip -6 neigh flush dev host2-eth0
r1$ ip -6 neigh flush dev r1-eth1
host1$ timeout 2 bash -c 'echo > /dev/tcp/fd00:192:168:2::10/80'
# The failsafe BGP port: the IPv6 session, restarted, comes back across the host endpoint.
host2$ birdc -s /var/run/calico/bird.ctl restart Mesh_fd00_192_168_1__10 | grep -x 'Mesh_fd00_192_168_1__10: restarted'
within 40s host2$ calicoctl node status | grep -E '^\| fd00:192:168:1::10 \| node-to-node mesh \| up +\| [0-9:]+ \| Established +\|$'
# Forwarded workload traffic is not host endpoint policy's business.
host2$ docker exec w2 ping -6 -c 1 -W 1 2001:db8:100::10 | grep -q 'ttl=62'
host1$ calicoctl delete hostEndpoint uplink --node host2
within 20s host1$ ping -6 -c 1 -W 1 fd00:192:168:2::10
host1$ timeout 2 bash -c 'echo > /dev/tcp/fd00:192:168:2::10/8080'
"""


@pytest.mark.emulation
def test_a_host_endpoint_polices_ipv6_and_keeps_the_failsafes(routed):
    replay(routed, HOST_ENDPOINT)
    wait_until(lambda: "hook output" not in routed.run("host2", "nft list table ip6 calico").stdout, 20,
               what="host2's ip6 table without host endpoint chains")
