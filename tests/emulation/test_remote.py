"""Calico hosts on other servers through the API: the placement asked for and refused, and the
seed's two hosts on two simulated servers (host2 a remote host: its shell, name, files and
commands on server2, its link to the segment a VXLAN pair over the underlay)."""

import re

import pytest

import topologies
from calisim.emulation import Cluster
from calisim.emulation.cluster import ClusterError
from calisim.emulation.remote import LINK_MTU

ICMP_HEADERS = 28  # IPv4 20 + ICMP 8: a ping of LINK_MTU - 28 bytes fills a packet of LINK_MTU


def test_server_of_follows_the_placement_and_its_overrides(runs):
    cluster = Cluster(topologies.load("flat", 4), servers="sim:2", place={"host1": "server2"})
    assert [cluster.server_of(host) for host in cluster.hosts] == ["server2", "server1", "server2", "server2"]
    assert Cluster(topologies.load("two_host")).server_of("host2") == "localhost"
    with pytest.raises(ClusterError, match="^unknown node 'host9'"):
        cluster.server_of("host9")


@pytest.mark.parametrize("servers, place, message", [
    ("sim:0", None, "--servers sim:0: the number of simulated servers must be between 1 and 99"),
    ("sim:2", {"host7": "server2"}, "--place host7=server2: no node host7 in this topology"),
    ("sim:2", {"host2": "server5"}, "--place host2=server5: no server server5 in --servers"),
    (None, {"host2": "server2"}, "--place host2=server2: placing nodes needs --servers"),
])
def test_bad_servers_or_places_are_refused_before_anything_starts(runs, servers, place, message):
    with pytest.raises(ClusterError) as error:
        Cluster(topologies.load("two_host"), servers=servers, place=place)
    assert str(error.value).startswith(message)
    assert not runs.exists()  # not even a run directory


@pytest.mark.emulation
def test_the_seeds_hosts_on_two_servers(untouched, runs):
    with Cluster(topologies.load("two_host"), servers="sim:2", docker=False) as cluster:
        assert [cluster.server_of(host) for host in cluster.hosts] == ["server1", "server2"]
        assert cluster.run("host2", "hostname; cat /etc/hostname").stdout == "host2\nhost2\n"
        assert cluster.run("host2", "echo $ETCD_ENDPOINTS; pwd").stdout.split() == [
            cluster.etcd_endpoint, str(cluster.host("host2").home)]
        # host2's files are on server2, at the run directory's path there: none of them here
        assert not cluster.run_dir.host("host2").exists()
        mounts = cluster.run("host2", "findmnt -no TARGET -M /etc && findmnt -no TARGET -M /var/run/calico")
        assert mounts.stdout == "/etc\n/run/calico\n", mounts  # /var/run is a link to /run
        host1 = cluster.topo.host_ip("host1")
        full = cluster.run("host2", f"ping -c1 -W3 -M do -s {LINK_MTU - ICMP_HEADERS} {host1}")
        assert " 0% packet loss" in full.stdout, full
        too_big = cluster.run("host2", f"ping -c1 -W2 -M do -s {LINK_MTU - ICMP_HEADERS + 1} {host1}")
        assert too_big.rc != 0
        version = cluster.run("host2", f"python -c \"import urllib.request as u; "
                                       f"print(u.urlopen('{cluster.etcd_endpoint}/version').read().decode())\"")
        assert '"etcdserver"' in version.stdout, version  # etcd on server1 answers host2 on server2
        cluster.start_nodes()  # host2's calico-node forked by server2's own zygote
        cluster.wait_for_mesh(timeout=30)  # host2's BIRD read through server2's ssh
        assert [cluster.bgp_established(host) for host in cluster.hosts] == [1, 1]
        status = cluster.run("host2", "calicoctl node status").stdout
        assert re.search(r"\| 192\.168\.3\.229 \| node-to-node mesh \| up +\|.*\| Established \|", status), status
