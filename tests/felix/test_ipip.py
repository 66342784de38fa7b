"""Across a router that knows only the host subnets: an IPIP pool carries workloads (protocol 4
on the wire), a plain pool does not.  nat-outgoing against the outside machine ext1, and as a
property: a workload started right after its pool, whatever its host and encapsulation, has its
very first packet to ext1 masqueraded (one routed cluster shared by the nat-outgoing tests)."""

import contextlib
import itertools
import os
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import topologies
from calisim.emulation import Cluster, ClusterError, sandbox, wait_until

from tests.conftest import replay, running_daemons


pytestmark = pytest.mark.emulation

MESH = r"""
host1$ calicoctl node run | grep -x 'IPIP backend: .*'
host2$ calicoctl node run
within 30s host1$ calicoctl node status | grep -E '192\.168\.2\.10 .* Established'
"""

ROUTED = MESH.replace("IPIP backend: .*", "IPIP backend: {backend}") + r"""
host1$ echo '[{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, spec: {ipip: {enabled: true}}}, {apiVersion: v1, kind: ipPool, metadata: {cidr: 10.20.0.0/16}}]' | calicoctl create -f -
host1$ calicoctl delete ipPool 192.168.0.0/16
host1$ docker network create --driver calico --ipam-driver calico-ipam --subnet 10.10.0.0/16 tunnelled
host1$ docker network create --driver calico --ipam-driver calico-ipam --subnet 10.20.0.0/16 plain
host1$ docker run --net tunnelled --name t1 -tid busybox
host2$ docker run --net tunnelled --name t2 -d workload
host1$ docker run --net plain --name p1 -tid busybox
host2$ docker run --net plain --name p2 -tid busybox
host1$ docker exec t1 ip -4 -o addr show cali0 | grep -q ' 10\.10\.'
host1$ docker exec p1 ip -4 -o addr show cali0 | grep -q ' 10\.20\.'

# The tunnelled pool crosses r1, encapsulated (the router sees host addresses and protocol 4).
r1$ (timeout 60 tcpdump -l -n -c 1 -i r1-eth0 'ip proto 4' > ipip.txt 2> tcpdump.err &)
within 20s r1$ grep -q 'listening on r1-eth0' tcpdump.err
within 30s host1$ docker exec t1 ping -c 1 -W 1 t2 | grep -q 'ttl=62'
within 10s r1$ grep -E 'IP 192\.168\.1\.10 > 192\.168\.2\.10: IP 10\.10\.' ipip.txt
# Host-originated traffic into the tunnel leaves with the tunnel address (tunl0's only address).
host1$ ip route get $(etcdctl --endpoints "$ETCD_ENDPOINTS" get --print-value-only /calico/v1/host/host2/config/IpInIpTunnelAddr | tr -d '"') | grep -E "via 192\.168\.2\.10 dev tunl0 src $(ip -4 -o addr show tunl0 | awk '{print $4}' | cut -d/ -f1) "
# Bulk TCP (full-size segments, GSO): 4 MB echoed back intact through the tunnel.
host1$ nsenter -t $(docker inspect -f '{{.State.Pid}}' t1) -n python -m calisim.probes tcp $(docker exec t1 nslookup t2 | awk '/^Address: / {print $2}') --bytes 4000000
# The plain pool does not: r1 has no route to the workloads' blocks.
host1! docker exec p1 ping -c 3 -W 1 p2
r1$ ip route | grep -c '^10\.' | grep -x 0
"""


@pytest.mark.parametrize("backend", ["ebpf", "userspace"])  # the backends this machine has (no ipip module)
def test_ipip_crosses_a_router_and_a_plain_pool_does_not(backend, untouched, runs):
    with Cluster(topologies.load("routed"), ipip_backend=backend) as cluster:
        results = replay(cluster, ROUTED.replace("{backend}", backend))
    assert all(r.passed for r in results)


VXLAN = MESH + r"""
host1$ echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.30.0.0/16}, spec: {vxlan: {enabled: true}}}' | calicoctl create -f -
host1$ calicoctl get ipPool 10.30.0.0/16 -o yaml | grep -A1 'vxlan:' | grep -q 'enabled: true'
host1$ calicoctl delete ipPool 192.168.0.0/16
host1$ docker network create --driver calico --ipam-driver calico-ipam --subnet 10.30.0.0/16 overlay
host1$ docker run --net overlay --name v1 -tid busybox
host2$ docker run --net overlay --name v2 -d workload
within 10s host1$ ip -d -o link show vxlan.calico | grep -E 'vxlan id 4096 local 192\.168\.1\.10 .*dstport 4789 nolearning'
within 10s host2$ ip -o -4 addr show vxlan.calico | grep -E 'inet 10\.30\.[0-9.]+/32'
r1$ (timeout 60 tcpdump -l -n -c 1 -i r1-eth0 'udp port 4789' > vxlan.txt 2> tcpdump.err &)
within 20s r1$ grep -q 'listening on r1-eth0' tcpdump.err
within 30s host1$ docker exec v1 ping -c 1 -W 1 v2 | grep -q 'ttl=62'
within 10s r1$ grep -E '192\.168\.1\.10\.[0-9]+ > 192\.168\.2\.10\.4789: VXLAN, flags \[I\] \(0x08\), vni 4096' vxlan.txt
host1$ nsenter -t $(docker inspect -f '{{.State.Pid}}' v1) -n python -m calisim.probes tcp $(docker exec v1 nslookup v2 | awk '/^Address: / {print $2}') --bytes 4000000
# Felix's routes, neighbours and forwarding entries, not BIRD's:
host1$ ip route show proto 80 | grep -E '^10\.30\.[0-9.]+/26 via 10\.30\.[0-9.]+ dev vxlan\.calico onlink'
host1$ ip route show proto bird | grep -c '^10\.30\.' | grep -x 0
host1$ ip neigh show dev vxlan.calico | grep -E '^10\.30\.[0-9.]+ lladdr ([0-9a-f]{2}:){5}[0-9a-f]{2} PERMANENT'
host1$ bridge fdb show dev vxlan.calico | grep -E 'dst 192\.168\.2\.10 self permanent'
# The pool goes, and so does the overlay.
host2$ docker rm -f v2
host1$ docker rm -f v1 && docker network rm overlay
host1$ echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}}' | calicoctl create -f - && calicoctl delete ipPool 10.30.0.0/16
within 10s host1! ip link show vxlan.calico
within 10s host2! ip link show vxlan.calico
"""


def test_a_vxlan_pool_crosses_the_router_in_udp_4789(untouched, runs):
    with Cluster(topologies.load("routed")) as cluster:
        results = replay(cluster, VXLAN)
    assert all(r.passed for r in results)


NAT_OUTGOING = r"""
host1$ echo '[{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, spec: {ipip: {enabled: true}, nat-outgoing: true}}, {apiVersion: v1, kind: ipPool, metadata: {cidr: 10.20.0.0/16}, spec: {ipip: {enabled: true}}}]' | calicoctl create -f -
host1$ calicoctl delete ipPool 192.168.0.0/16
host1$ docker network create --driver calico --ipam-driver calico-ipam --subnet 10.10.0.0/16 natted
host1$ docker network create --driver calico --ipam-driver calico-ipam --subnet 10.20.0.0/16 plain
host1$ docker run --net natted --name n1 -tid busybox
host2$ docker run --net natted --name n2 -tid busybox
host1$ docker run --net plain --name p1 -tid busybox
ext1$ (timeout 60 tcpdump -l -n -i ext1-eth0 icmp > ext.txt 2> tcpdump.err &)
within 20s ext1$ grep -q 'listening on ext1-eth0' tcpdump.err
# From a nat-outgoing pool to outside every pool: masqueraded to the host's address, answered.
within 20s host1$ docker exec n1 ping -c 1 -W 1 198.51.100.10
within 5s ext1$ grep -E 'IP 192\.168\.1\.10 > 198\.51\.100\.10: ICMP echo request' ext.txt
ext1$ grep -E 'IP 10\.10\.' ext.txt | grep -c . | grep -x 0
# From a pool without nat-outgoing: not masqueraded, so ext1 answers an address nobody routes back.
host1! docker exec p1 ping -c 2 -W 1 198.51.100.10
within 5s ext1$ grep -E 'IP 10\.20\.[0-9.]+ > 198\.51\.100\.10: ICMP echo request' ext.txt
# Between workloads of the pools: never masqueraded (host2 sees n1's own address).
host2$ (timeout 60 tcpdump -l -n -i any 'icmp[icmptype] = icmp-echo' > pod.txt 2> tcpdump.err &)
within 20s host2$ grep -q 'listening on any' tcpdump.err
within 20s host1$ docker exec n1 ping -c 1 -W 1 n2
within 5s host2$ grep -E 'IP 10\.10\.[0-9.]+ > 10\.10\.[0-9.]+: ICMP echo request' pod.txt
host2$ grep -E 'IP 192\.168\.1\.10 > 10\.10\.' pod.txt | grep -c . | grep -x 0
"""


@pytest.fixture(scope="module")
def routed(module_runs):
    """A routed cluster with its nodes meshed; the caller's namespace and processes as they were after it."""
    before, daemons = sandbox.snapshot(), running_daemons()
    with Cluster(topologies.load("routed")) as cluster:
        cluster.start_nodes()
        cluster.wait_for_mesh(60)
        yield cluster
    assert running_daemons() == daemons, "processes left running"
    assert sandbox.snapshot() == before, "the caller's namespace changed"


def test_nat_outgoing_masquerades_only_to_outside_every_pool(routed):
    results = replay(routed, NAT_OUTGOING)
    assert all(r.passed for r in results)


EXT1 = "198.51.100.10"
HOST_ADDRESSES = {"host1": "192.168.1.10", "host2": "192.168.2.10"}
FIRST_PACKET_EXAMPLES = {"ci": 4, "scale": 20}[os.environ.get("CALISIM_HYPOTHESIS_PROFILE", "ci")]
POOL_NUMBERS = itertools.count(70)  # a fresh pool per example: 10.70.0.0/16, 10.71.0.0/16, ...
ARP_RETRY_MS = 1000  # the kernel asks again for an unanswered neighbour after retrans_time_ms


def must(result) -> str:
    if result.rc != 0:
        raise ClusterError(f"{result.host}$ {result.command}: {result.stdout}{result.stderr}")
    return result.stdout


def first_ping(cluster, host: str, cidr: str, spec: str, detached: bool):
    """A pool, its network and a fresh workload in it, one right after the other, the workload's
    one echo request to ext1; the network and pool are gone after it.  The workload pings attached,
    with --rm, or (detached) runs with -d, pings in docker exec and is removed running, with rm -f."""
    network = f"first{cidr.split('.')[1]}"
    ping = f"ping -c 1 -W 3 {EXT1}"
    workload = (f"docker run --rm --net {network} busybox {ping}" if not detached else
                f"docker run -d --name {network} --net {network} busybox sleep 600 > /dev/null "
                f"&& docker exec {network} {ping}; rc=$?; docker rm -f {network} > /dev/null; exit $rc")
    pinged = cluster.run(host, f"echo '{{apiVersion: v1, kind: ipPool, metadata: {{cidr: {cidr}}}, spec: {{{spec}}}}}' "
                               f"| calicoctl create -f - && docker network create --driver calico "
                               f"--ipam-driver calico-ipam --subnet {cidr} {network} && {{ {workload}; }}")
    must(cluster.run(host, f"docker network rm {network} && calicoctl delete ipPool {cidr}"))
    return pinged


@pytest.mark.emulation
@settings(max_examples=FIRST_PACKET_EXAMPLES, deadline=None)
@given(host=st.sampled_from(sorted(HOST_ADDRESSES)), ipip=st.booleans(), earlier=st.booleans(), detached=st.booleans())
@example(host="host1", ipip=False, earlier=True, detached=False)  # the case: 10.70.14.0 seen outside
@example(host="host2", ipip=False, earlier=True, detached=True)
def test_a_new_workloads_first_packet_out_of_a_new_nat_outgoing_pool_is_masqueraded(routed, host, ipip, earlier,
                                                                                   detached):
    """The workload's one echo request to ext1 is answered (ext1 has no route back to any pool:
    only a masqueraded request can be) in less than the ARP retry (its gateway's proxy ARP was in
    place), and ext1 never saw the pool's own addresses; also when (earlier) the same pool existed
    a moment before without nat-outgoing and a workload given the same address pinged ext1 from it;
    and whether the workloads ping as `docker run --rm` or from `docker exec` in a `docker run -d`
    container removed running with `docker rm -f`."""
    cidr = f"10.{next(POOL_NUMBERS)}.0.0/16"
    encapsulation = "ipip: {enabled: true}, " if ipip else ""
    if earlier:
        first_ping(routed, host, cidr, f"{encapsulation}nat-outgoing: false", detached)  # unanswered: not masqueraded
    capture = f"ext-{cidr.split('/')[0]}.txt"
    must(routed.run("ext1", f"(timeout 120 tcpdump -l -n -i ext1-eth0 'icmp[icmptype] = icmp-echo' > {capture} "
                            f"2> {capture}.err &)"))
    wait_until(lambda: routed.run("ext1", f"grep -q listening {capture}.err").rc == 0, 20, what="tcpdump on ext1")
    pinged = first_ping(routed, host, cidr, f"{encapsulation}nat-outgoing: true", detached)
    masqueraded = f"IP {HOST_ADDRESSES[host]} > {EXT1}: ICMP echo request"
    with contextlib.suppress(ClusterError):  # told below, with what ext1 saw
        wait_until(lambda: masqueraded in routed.run("ext1", f"cat {capture}").stdout, 5, what="the request on ext1")
    seen = must(routed.run("ext1", f"cat {capture}"))
    assert pinged.rc == 0 and "1 packets received" in pinged.stdout, (pinged, seen)
    assert masqueraded in seen and f"IP {cidr.split('0.0/')[0]}" not in seen, seen
    (milliseconds,) = re.findall(r"time=([0-9.]+) ms", pinged.stdout)
    assert float(milliseconds) < ARP_RETRY_MS * 0.9, pinged.stdout
