"""Faults on one live two-host cluster (shared by the module; every test puts back what it broke):
each verb of ``cluster.faults``, bad input that changes nothing, and the probe stream that
measures the outages."""

import json
import re
import time

import pytest

import topologies
from calisim.emulation import Cluster, wait_until
from calisim.emulation.faults import NETEM_MISSING, FaultError, netem_available, nsexec
from calisim.probes import StreamProbe, probe_from, stream_from
from calisim.scenarios.seed import inspect

from .conftest import replay

pytestmark = pytest.mark.emulation

SETUP = """
host1$ calicoctl node run --name 192.168.3.229
host2$ calicoctl node run --name 192.168.3.228
within 30s host1$ calicoctl node status | grep -q Established
host1$ echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, spec: {ipip: {enabled: true}}}' | calicoctl create -f -
host1$ docker network create --driver calico --ipam-driver calico-ipam net1
host1$ docker run --net net1 --name w1 -tid busybox
host2$ docker run --net net1 --name w2 -tid busybox
host2$ docker run --net net1 --name echo2 -d workload
"""


class World:
    def __init__(self, cluster):
        self.cluster = cluster
        self.faults = cluster.faults
        self.w1 = inspect(cluster, "host1", "w1")["State"]["Pid"]
        self.w2_ip = address(cluster, "host2", "w2")
        self.echo2_ip = address(cluster, "host2", "echo2")

    def reachable(self, timeout: float = 60) -> None:
        """w1 reaches w2 within timeout (BGP and routes may need a moment after a fault)."""
        wait_until(lambda: probe_from(self.w1, "icmp", self.w2_ip, count=1).reachable, timeout,
                   interval=0.5, what=f"w1 reaching w2 ({self.w2_ip})")

    def stream(self, seconds: float = 2.0, interval_ms: float = 10.0):
        return stream_from(self.w1, self.w2_ip, interval_ms, seconds)


def address(cluster, host, name):
    return next(iter(inspect(cluster, host, name)["NetworkSettings"]["Networks"].values()))["IPAddress"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import os

    os.environ["CALISIM_RUNS"] = str(tmp_path_factory.mktemp("runs", numbered=True))
    with Cluster(topologies.load("two_host")) as cluster:
        replay(cluster, SETUP)
        world = World(cluster)
        world.reachable()
        yield world


@pytest.fixture
def healthy(world):
    """Each test starts and ends with no fault in force and w1 reaching w2."""
    assert world.faults.active() == []
    yield world
    assert world.faults.active() == [], world.faults.active()
    world.reachable()


def qdiscs(world, node: str) -> str:
    """Every qdisc of a node (a host or a switch), in its own namespace."""
    return nsexec(world.cluster.net.nameToNode[node].pid, "tc", "qdisc", "show").stdout


def fault_log(world) -> list[str]:
    path = world.faults.log_path
    return path.read_text().splitlines() if path.exists() else []


def test_bad_input_is_refused_with_one_line_and_changes_nothing(healthy):
    faults, before = healthy.faults, fault_log(healthy)
    refusals = {
        lambda: faults.link("host9", "s1", "down"): "unknown host 'host9'",
        lambda: faults.link("host1", "host2", "down"): "no link between host1 and host2",
        lambda: faults.link("host1", "s1", "sideways"): "link state must be down or up",
        lambda: faults.loss("host2", "s1", 101): "loss must be a percentage between 0 and 100",
        lambda: faults.loss("host2", "s1", -1): "between 0 and 100",
        lambda: faults.corrupt("host2", "s1", "lots"): "corruption must be a percentage",
        lambda: faults.rate("host2", "s1", "10 furlongs"): "malformed rate '10 furlongs'",
        lambda: faults.rate("host2", "s1", "0mbit"): "malformed rate",
        lambda: faults.kill("host2", "named"): "unknown daemon 'named'",
        lambda: faults.kill("host2", "etcd"): "etcd does not run in host2",
        lambda: faults.kill("s1", "bird"): "s1 is not a Calico host",
        lambda: faults.start("host2", "dockerd"): "dockerd is already running in host2",
        lambda: faults.partition("host1", from_etcd=True): "host1 runs etcd itself",
        lambda: faults.partition("host2", ["host2"]): "cannot partition host2 from itself",
        lambda: faults.heal("host2"): "host2 is not partitioned",
        lambda: faults.boot("host2"): "host2 has not crashed",
    }
    for call, message in refusals.items():
        with pytest.raises(FaultError) as refused:
            call()
        assert message in str(refused.value) and "\n" not in str(refused.value)
    assert fault_log(healthy) == before
    assert "tbf" not in qdiscs(healthy, "host2") and "clsact" not in qdiscs(healthy, "s1")


@pytest.mark.skipif(netem_available(), reason="this kernel has netem: delay is applied, not refused")
def test_delay_is_refused_naming_what_the_kernel_lacks(healthy):
    with pytest.raises(FaultError) as refused:
        healthy.faults.delay("host2", "s1", 50, 5)
    assert str(refused.value) == NETEM_MISSING == "delay needs the kernel's sch_netem qdisc, which this kernel does not have"


def test_link_down_stops_traffic_and_up_restores_it_with_the_default_route(healthy):
    faults, cluster = healthy.faults, healthy.cluster
    faults.link("host2", "s1", "down")
    assert faults.active() == [{"fault": "link-down", "link": ["host2", "s1"]}]
    assert "state DOWN" in cluster.run("host2", "ip link show host2-eth0").stdout
    assert healthy.stream(seconds=1).received == 0
    faults.link("host2", "s1", "up")
    assert "default via 192.168.3.1" in cluster.run("host2", "ip route").stdout
    healthy.reachable()
    assert [line.split(" ", 1)[1] for line in fault_log(healthy)[-2:]] == ["link host2 s1 down", "link host2 s1 up"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ", fault_log(healthy)[-1])


def test_loss_corruption_and_duplication_measured_by_a_stream(healthy):
    faults = healthy.faults
    faults.loss("host2", "s1", 100)
    assert healthy.stream(seconds=1).received == 0
    faults.loss("host2", "s1", 50)  # on each direction: about a quarter of the echoes come back
    half = healthy.stream(seconds=3)
    assert 0.1 < half.received / half.sent < 0.45, half
    assert faults.active() == [{"fault": "impair", "link": ["host2", "s1"], "loss": 50.0}]
    faults.loss("host2", "s1", 0)
    faults.corrupt("host2", "s1", 100)  # a flipped byte: the receiver's ICMP checksum drops it
    assert healthy.stream(seconds=1).received == 0
    faults.clear("host2", "s1")
    faults.duplicate("host2", "s1", 100)
    doubled = healthy.stream(seconds=1)
    assert doubled.received == doubled.sent and doubled.duplicates >= doubled.sent, doubled
    faults.clear("host2", "s1")
    clean = healthy.stream(seconds=2)
    assert clean.received >= clean.sent - 2 and clean.duplicates == 0 and clean.longest_outage_ms < 100, clean


def test_rate_limits_a_tcp_transfer(healthy):
    faults, size = healthy.faults, 200_000
    faults.rate("host2", "s1", "1mbit")
    assert "tbf" in qdiscs(healthy, "host2") and "tbf" in qdiscs(healthy, "s1")
    slow = probe_from(healthy.w1, "tcp", healthy.echo2_ip, size=size)
    faults.clear("host2", "s1")
    fast = probe_from(healthy.w1, "tcp", healthy.echo2_ip, size=size)
    assert slow.reachable and fast.reachable
    assert slow.rtt_avg_ms >= size * 8 / 1e6 * 1000 * 0.9, slow  # 200 kB at 1 Mbit/s: 1.6 s at least
    assert fast.rtt_avg_ms < slow.rtt_avg_ms / 2, (fast, slow)
