"""Across a router that knows only the host subnets: an IPIP pool carries workloads (protocol 4
on the wire), a plain pool does not."""

import pytest

import topologies
from calisim.cluster import Cluster

from .conftest import replay


pytestmark = pytest.mark.emulation

ROUTED = r"""
host1$ calicoctl node run | grep -x 'IPIP backend: {backend}'
host2$ calicoctl node run
within 30s host1$ calicoctl node status | grep -E '192\.168\.2\.10 .* Established'
host1$ echo '[{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, spec: {ipip: {enabled: true}}}, {apiVersion: v1, kind: ipPool, metadata: {cidr: 10.20.0.0/16}}]' | calicoctl create -f -
host1$ calicoctl delete ipPool 192.168.0.0/16
host1$ docker network create --driver calico --ipam-driver calico-ipam --subnet 10.10.0.0/16 tunnelled
host1$ docker network create --driver calico --ipam-driver calico-ipam --subnet 10.20.0.0/16 plain
host1$ docker run --net tunnelled --name t1 -d busybox
host2$ docker run --net tunnelled --name t2 -d busybox
host1$ docker run --net plain --name p1 -d busybox
host2$ docker run --net plain --name p2 -d busybox
host1$ docker exec t1 ip -4 -o addr show cali0 | grep -q ' 10\.10\.'
host1$ docker exec p1 ip -4 -o addr show cali0 | grep -q ' 10\.20\.'

# The tunnelled pool crosses r1, encapsulated (the router sees host addresses and protocol 4).
r1$ (timeout 60 tcpdump -l -n -c 1 -i r1-eth0 'ip proto 4' > ipip.txt 2> tcpdump.err &)
within 20s r1$ grep -q 'listening on r1-eth0' tcpdump.err
within 30s host1$ docker exec t1 ping -c 1 -W 1 t2 | grep -q 'ttl=62'
within 10s r1$ grep -E 'IP 192\.168\.1\.10 > 192\.168\.2\.10: IP 10\.10\.' ipip.txt
# The plain pool does not: r1 has no route to the workloads' blocks.
host1! docker exec p1 ping -c 3 -W 1 p2
r1$ ip route | grep -c 10\. | grep -x 0
"""


@pytest.mark.parametrize("backend", ["ebpf", "userspace"])  # the backends this machine has (no ipip module)
def test_ipip_crosses_a_router_and_a_plain_pool_does_not(backend, untouched, runs):
    with Cluster(topologies.load("routed"), ipip_backend=backend) as cluster:
        results = replay(cluster, ROUTED.replace("{backend}", backend))
    assert all(r.passed for r in results)
