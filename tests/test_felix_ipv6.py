"""Dual-stack workloads on the seed's two hosts, as libnetwork-plugin v1.1.1 made them: `--ipv6`
networks, IPv4 and IPv6 addresses per container, names for both families, the hop limits of
the seed's pings (63 on one host, 62 across), isolation between networks over ICMPv6, TCP and
UDP, workload to its own host dropped, nat-outgoing for an IPv6 pool.  One cluster for the module."""

import json
import shutil
import tempfile
from pathlib import Path

import pytest

import topologies
from calisim.emulation import Cluster, wait_until
from calisim.probes import probe_from

from .conftest import replay

pytestmark = pytest.mark.emulation

WORKLOADS = {"workload-A": ("host1", "my_net"), "workload-C": ("host1", "my_net"), "workload-E": ("host1", "other_net"),
             "workload-B": ("host2", "my_net"), "workload-D": ("host2", "other_net")}


@pytest.fixture(scope="module")
def cluster():
    base = Path(tempfile.mkdtemp(prefix="cs-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CALISIM_RUNS", str(base / "runs"))
        with Cluster(topologies.load("two_host")) as running:
            running.start_nodes(options="--ip6 autodetect")
            running.wait_for_mesh(timeout=90)
            for network in ("my_net", "other_net"):
                assert running.run("host1", f"docker network create --ipv6 -d calico --ipam-driver calico-ipam {network}").rc == 0
            for name, (host, network) in WORKLOADS.items():
                done = running.run(host, f"docker run --net {network} --name {name} -d workload")
                assert done.rc == 0, done.stdout + done.stderr
            yield running
    shutil.rmtree(base)


def inspect(cluster, name: str) -> dict:
    return json.loads(cluster.run(WORKLOADS[name][0], f"docker inspect {name}").stdout)[0]


def test_dual_stack_workloads_reach_each_other_by_name_with_the_seeds_hop_limits(cluster):
    replay(cluster, """\
host1$ docker network inspect my_net | grep -q '"EnableIPv6": true'
within 30s host1$ docker exec workload-A ping -6 -c 2 workload-C | grep -q 'ttl=63'
within 30s host1$ docker exec workload-A ping -6 -c 2 workload-B.my_net | grep -q 'ttl=62'
within 30s host1$ docker exec workload-A ping -4 -c 2 workload-B | grep -q 'ttl=62'
host1! docker exec workload-A ping -6 -c 1 workload-D
host1$ docker exec workload-A ip -6 route | grep -E '^default via fe80::[0-9a-f:]+ dev cali0'
host1$ ip -6 route | grep -E "^$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}' workload-A) dev cali[0-9a-f]+ proto static"
""")
    settings = next(iter(inspect(cluster, "workload-B")["NetworkSettings"]["Networks"].values()))
    assert settings["GlobalIPv6PrefixLen"] == 128 and settings["GlobalIPv6Address"].startswith("fd80:24e2:f998:72d6:")
    assert settings["IPAddress"].startswith("192.168.")


def test_scapy_probes_over_ipv6_measure_hop_limit_rtt_and_isolation(cluster):
    source = inspect(cluster, "workload-A")["State"]["Pid"]
    address = {name: next(iter(inspect(cluster, name)["NetworkSettings"]["Networks"].values()))["GlobalIPv6Address"]
               for name in WORKLOADS}
    for name, hop_limit in (("workload-C", 63), ("workload-B", 62)):
        probe = wait_until(lambda: (r := probe_from(source, "icmp", address[name])).reachable and r, 30, 0.5,
                           f"ICMPv6 echo to {name}")
        assert probe.ttl == hop_limit and probe.received == 4 and 0 < probe.rtt_min_ms <= probe.rtt_max_ms
        assert probe_from(source, "tcp", address[name]).reachable and probe_from(source, "udp", address[name]).reachable
    for name in ("workload-D", "workload-E"):  # other network: on the other host, on the same one
        for protocol in ("icmp", "tcp", "udp"):
            assert not probe_from(source, protocol, address[name], count=2).reachable, (name, protocol)
    assert not probe_from(source, "icmp", "fd00:3::229", count=2).reachable  # workload to its own host: dropped
    assert probe_from(source, "icmp", "fd00:3::228", count=2).reachable  # another host is not its own


def test_nat_outgoing_on_the_ipv6_pool_reaches_felixs_ip6_table(cluster):
    replay(cluster, """\
host1$ echo "{apiVersion: v1, kind: ipPool, metadata: {cidr: 'fd80:24e2:f998:72d6::/64'}, spec: {nat-outgoing: true}}" | calicoctl apply -f -
within 20s host1$ nft list set ip6 calico nat_pools | grep -q 'fd80:24e2:f998:72d6::/64'
host1$ nft list chain ip6 calico postrouting | grep -q 'ip6 saddr @nat_pools ip6 daddr != @all_pools masquerade'
""")
