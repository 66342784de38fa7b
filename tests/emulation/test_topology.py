"""The topology's etcd members (``--etcd-members``): etcd1..etcdN beside etcd_host, on its segment
with its subnet and default route, at addresses nothing else takes; without them, etcd stays in
etcd_host alone; and the hosts begun at once, handed over as Mininet adds them.  No root:
topologies are only planned here; but the last test (root) builds one to check its veths'
interface indexes."""

import ipaddress
import json
import threading
import time

import pytest

import topologies
from calisim.emulation import Cluster
from calisim.emulation.topology import HOST_STARTS, begin_hosts


class Begun:
    """A stand-in host: made by a build that takes a while, as a shell's start does."""

    def __init__(self, name: str, **params):
        if params.get("fails"):
            raise RuntimeError(f"{name} cannot get its views")
        time.sleep(0.1)
        self.name, self.params, self.terminated = name, params, False

    def terminate(self) -> None:
        self.terminated = True


def test_hosts_are_begun_at_once_and_handed_over_in_mininets_order():
    """Every host naming its address starts before Mininet asks for the first, HOST_STARTS at a
    time, each made with the topology's parameters; a host naming none is made when asked."""
    topo = topologies.load("flat", 2 * HOST_STARTS)
    topo.addHost("plain")  # no address of its own: Mininet's defaults apply
    building: set[int] = set()
    make = begin_hosts(topo, lambda name, **params: (building.add(threading.get_ident()), Begun(name, **params))[1])
    started = time.monotonic()
    hosts = [make(name, **topo.nodeInfo(name)) for name in topo.hosts() if name != "plain"]
    assert time.monotonic() - started < 0.1 * len(hosts) / 2  # not one after another
    assert len(building) == HOST_STARTS
    assert [h.name for h in hosts] == [n for n in topo.hosts() if n != "plain"]
    assert all(h.params == topo.nodeInfo(h.name) for h in hosts)
    assert make("plain", ip="10.0.0.9/8").params == {"ip": "10.0.0.9/8"}


def test_a_host_that_fails_stops_the_ones_begun_behind_it():
    topo = topologies.load("flat", 4)
    topo.nodeInfo("host2")["fails"] = True
    begun: list[Begun] = []
    make = begin_hosts(topo, lambda name, **params: begun.append(Begun(name, **params)) or begun[-1])
    assert make("host1").name == "host1"
    with pytest.raises(RuntimeError, match="host2 cannot get its views"):
        make("host2")
    assert sorted((h.name, h.terminated) for h in begun) == [("host1", False), ("host3", True), ("host4", True)]


def test_one_member_is_etcd_in_host1_as_ever():
    topo = topologies.load("two_host")
    assert topo.etcd_members() == [] and topo.etcd_nodes() == ["host1"]
    assert topologies.load("two_host", etcd_members=1).hosts(sort=True) == topo.hosts(sort=True)


@pytest.mark.parametrize("name", topologies.NAMES)
@pytest.mark.parametrize("count", [3, 5])
def test_members_sit_on_the_etcd_hosts_segment_at_free_addresses(name, count):
    topo = topologies.load(name, etcd_members=count)
    members = [f"etcd{index}" for index in range(1, count + 1)]
    assert topo.etcd_members() == topo.etcd_nodes() == members
    host = topo.nodeInfo(topo.etcd_host)
    subnet = ipaddress.ip_interface(host["ip"]).network
    addresses = [ipaddress.ip_interface(topo.nodeInfo(member)["ip"]) for member in members]
    assert all(address.network == subnet for address in addresses)
    assert len(set(topo._addresses())) == len(topo._addresses())  # nothing taken twice
    segment = next(node for node in topo.g.edge[topo.etcd_host] if topo.isSwitch(node))
    assert all(segment in topo.g.edge[member] for member in members)
    assert all(topo.nodeInfo(member).get("defaultRoute") == host.get("defaultRoute") for member in members)
    assert not any(topo.nodeInfo(member).get("calico") for member in members)
    assert topo.calico_hosts() == topologies.load(name).calico_hosts()


@pytest.mark.parametrize("count, says", [
    (2, "--etcd-members 2: etcd wants an odd number of members: a cluster of 2 needs 2 for quorum, "
        "so it survives 0 failure(s), as a cluster of 1 does (use 1, 3 or 5)"),
    (4, "--etcd-members 4: etcd wants an odd number of members: a cluster of 4 needs 3 for quorum, "
        "so it survives 1 failure(s), as a cluster of 3 does (use 1, 3 or 5)"),
    (0, "--etcd-members takes 1, 3 or 5, not 0"),
    (7, "--etcd-members takes 1, 3 or 5, not 7"),
])
def test_other_member_counts_are_refused_with_etcds_reason(count, says):
    with pytest.raises(ValueError) as refused:
        topologies.load("two_host", etcd_members=count)
    assert str(refused.value) == says


@pytest.mark.emulation
def test_each_veth_end_has_an_index_other_than_its_peers(untouched, runs):
    """Both ends at the same index (2, the first after lo in fresh namespaces) made the kernel
    apply their carrier changes late: host1's bridge port stayed disabled up to a second."""
    with Cluster(topologies.load("two_host")) as cluster:
        for host in cluster.hosts:
            link = json.loads(cluster.run(host, f"ip -j link show {host}-eth0").stdout)[0]
            # IFLA_LINK (link_index) is left out exactly when a device's peer index equals its own
            assert link.get("link_index") not in (None, link["ifindex"]), link
