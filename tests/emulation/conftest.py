"""What the fault tests share: one live cluster for a whole module (``live_world``), the
``healthy`` guard around each test, and reading workloads' addresses back from Docker and IPAM."""

import pytest

from calisim.emulation import Cluster, wait_until
from calisim.probes import probe_from, stream_from
from calisim.scenarios.seed import inspect

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


def live_world(topo, prepare, world_class=World, **cluster_options):
    """One cluster for a whole module (its run directory under the module's runs: the fixture
    calling this asks for module_runs), prepared and healthy (``world.reachable()``), stopped
    after the module's last test."""
    with Cluster(topo, **cluster_options) as cluster:
        prepare(cluster)
        world = world_class(cluster)
        world.reachable()
        yield world


@pytest.fixture
def healthy(world):
    """Each test starts and ends with no fault in force and w1 reaching w2.  A test that failed
    half-way is told so, and its links and partitions are put right first, so that the later
    tests on the same world still run."""
    assert world.faults.active() == []
    yield world
    left = world.faults.active()
    for fault in left:
        if fault["fault"] == "impair":
            world.faults.clear(*fault["link"])
        elif fault["fault"] == "link-down":
            world.faults.link(*fault["link"], "up")
        elif fault["fault"] == "partition":
            world.faults.heal(fault["host"])
    assert left == [], left
    world.reachable()


def ipam_workload_addresses(cluster) -> list[str]:
    """Every address IPAM has handed out to something other than a tunnel (a list: twice = twice)."""
    import ipaddress

    found = []
    with cluster.datastore() as ds:
        blocks = ds.list("/calico/ipam/v2/assignment/ipv4/block/")
    for entry in blocks:
        block = entry.value
        network = ipaddress.ip_network(block["cidr"])
        for ordinal, index in enumerate(block["allocations"]):
            if index is not None and not (block["attributes"][index]["handle_id"] or "").startswith("tunnel-"):
                found.append(str(network.network_address + ordinal))
    return sorted(found)


def running_workloads(cluster) -> dict[str, str]:
    """Every running workload's name (as host/name) and address."""
    found = {}
    for host in cluster.hosts:
        listed = cluster.run(host, "docker ps --format '{{.Names}}'")
        assert listed.rc == 0, listed
        found |= {f"{host}/{name}": address(cluster, host, name) for name in listed.stdout.split()}
    return found


def running_workload_addresses(cluster) -> list[str]:
    return sorted(running_workloads(cluster).values())
