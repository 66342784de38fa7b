"""Probes: the outage arithmetic of the probe stream (no root), and ICMP, TCP and UDP measured
from inside a workload on two hosts."""

import pytest

import topologies
from calisim.emulation import Cluster
from calisim.probes import longest_outage

from tests.conftest import replay


def test_the_longest_outage_runs_from_the_first_lost_probe_to_the_next_answered_one():
    sent = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert longest_outage(sent, {0, 1, 2, 3, 4, 5, 6}, 0.7) == (0.0, None, None)
    assert longest_outage(sent, {0, 3, 4, 5, 6}, 0.7) == (200.0, 0.1, 0.3)
    assert longest_outage(sent, {0, 2, 6}, 0.7) == (300.0, 0.3, 0.6)  # the longer of two
    assert longest_outage(sent, {0, 1}, 0.7) == (500.0, 0.2, None)  # still out when the stream ended


WORKLOADS = """
host1$ calicoctl node run
host2$ calicoctl node run
host1$ docker network create --driver calico --ipam-driver calico-ipam net1
host1$ docker run --net net1 --name echo1 -d workload
host2$ docker run --net net1 --name echo2 -d workload
host2$ docker run --net net1 --name plain -tid busybox
"""


@pytest.mark.emulation
def test_probes_measure_icmp_tcp_and_udp_from_inside_a_workload(untouched, runs):
    from calisim.probes import probe_from
    from calisim.scenarios.seed import inspect

    with Cluster(topologies.load("two_host")) as cluster:
        replay(cluster, WORKLOADS)
        source = inspect(cluster, "host1", "echo1")["State"]["Pid"]
        address = {name: next(iter(inspect(cluster, "host2", name)["NetworkSettings"]["Networks"].values()))["IPAddress"]
                   for name in ("echo2", "plain")}
        for attempt in range(40):  # BIRD needs a moment to carry host2's block
            icmp = probe_from(source, "icmp", address["echo2"], count=2)
            if icmp.received == 2:
                break
        assert icmp.received == 2 and icmp.ttl == 62 and 0 < icmp.rtt_min_ms <= icmp.rtt_avg_ms <= icmp.rtt_max_ms
        assert probe_from(source, "tcp", address["echo2"]).reachable
        assert probe_from(source, "udp", address["echo2"]).reachable
        assert not probe_from(source, "tcp", address["plain"]).reachable  # busybox serves nothing
        assert not probe_from(source, "udp", address["plain"]).reachable
        unreachable = probe_from(source, "icmp", "10.10.255.254", count=1)
        assert unreachable.received == 0 and unreachable.ttl is None

