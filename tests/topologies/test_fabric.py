"""Peers that are not Calico nodes: the fabric topology's BIRD ToRs and spines.  Without root:
the fabric's AS plan, Calico steps and routers' configs (checked with `bird -p`), and a fabric
beyond its address plan refused.  Each bundled fabric transcript (node-specific peers to the ToR,
one per model, dual stack) replays on a 2x2 fabric; a global peer to a ToR learns routes, and a global peer
equal to a node's own address is a `global` row that never comes up (Calico 2.x)."""

import ipaddress
import json
import subprocess

import pytest

import topologies
from calisim.emulation import Cluster
from calisim.node import bird

from tests.conftest import PYTHON, replay


@pytest.mark.emulation
@pytest.mark.parametrize("model", ["as-per-rack", "as-per-host", "downward-default"])
def test_each_fabric_scenario_through_the_cli(model, untouched, runs):
    """The bundled transcript by hand, then the scenario's measured outcome: two sessions per host (to
    its ToR over IPv4 and over IPv6), pings across racks with TTL 59 (ToR, spine, ToR), inside the rack
    62 (direct) or 61 (via the ToR), over IPv4 and IPv6 alike."""
    done = subprocess.run([PYTHON, "-m", "calisim", f"fabric-{model}", "--json"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout)
    assert all(step["passed"] for step in document["steps"])
    summary = document["summary"]
    assert summary["mismatches"] == []
    assert summary["sessions"] == {f"host{i}": 2 for i in range(1, 5)}
    ttls = {(p["pair"]["source"], p["pair"]["destination"], ipaddress.ip_address(p["destination_ip"]).version):
            p["probe"]["ttl"] for p in summary["pairs"]}
    assert ttls == {(source, destination, version): ttl for version in (4, 6) for (source, destination), ttl in
                    {("w1", "w2"): 62 if model == "as-per-rack" else 61, ("w1", "w3"): 59, ("w3", "w1"): 59}.items()}


GLOBAL_PEERS = r"""
host1$ calicoctl node run --as 65001
host2$ calicoctl node run --as 65001
host1$ calicoctl config set nodeToNodeMesh off
host1$ echo '[{apiVersion: v1, kind: bgpPeer, metadata: {scope: global, peerIP: 172.20.1.1}, spec: {asNumber: 65001}}, {apiVersion: v1, kind: bgpPeer, metadata: {scope: global, peerIP: 172.20.1.11}, spec: {asNumber: "0.65001"}}]' | calicoctl create -f -
host1$ calicoctl get bgpPeer --scope=global | grep -E '^global +172\.20\.1\.11 +65001 *$'
within 60s host1$ calicoctl node status | grep -E '^\| 172\.20\.1\.1 +\| global +\| up +\| .*Established'
within 60s host2$ calicoctl node status | grep -E '^\| 172\.20\.1\.1 +\| global +\| up +\| .*Established'
host1$ grep -A2 'protocol bgp Global_172_20_1_11 ' /var/run/calico/bird.cfg | grep 'neighbor 172.20.1.11 as 65001;'
within 20s host1$ calicoctl node status | grep -E '^\| 172\.20\.1\.11 +\| global +\| start +\| .*(Idle|Active|Connect)'
host1$ docker network create --driver calico --ipam-driver calico-ipam net1
host1$ docker run --net net1 --name w1 -tid busybox
host2$ docker run --net net1 --name w2 -tid busybox
within 60s host1$ docker exec w1 ping -c 1 -W 1 w2 | grep 'ttl=62'
# Learnt from the ToR (it reflects host2's block, next hop host2). w2's own /32 can come first (the ping
# above may pass on it) while confd is still adding host2's block to its BIRD: wait for the block.
within 20s host1$ birdc -s /var/run/calico/bird.ctl show route protocol Global_172_20_1_1 | grep -E '^192\.168\.[0-9.]+/26 .*from 172\.20\.1\.1'
within 20s tor1$ birdc -s /var/run/calico/bird.ctl show route | grep -E '^192\.168\.[0-9.]+/26 ' | grep -c . | grep -x 2
# The self-peer never comes up.
host1! calicoctl node status | grep -E '172\.20\.1\.11 .*Established'
"""


@pytest.mark.emulation
def test_global_peers_to_a_bird_router_and_to_the_node_itself(untouched, runs):
    with Cluster(topologies.load("fabric", racks=1, hosts_per_rack=2, spines=1)) as cluster:
        results = replay(cluster, GLOBAL_PEERS)
    assert all(r.passed for r in results)


@pytest.mark.emulation
@pytest.mark.parametrize("args, message", [
    (["--racks", "0"], "the fabric topology takes 1 to 99 racks, not 0"),
    (["--racks", "100"], "the fabric topology takes 1 to 99 racks, not 100"),
    (["--hosts-per-rack", "300"], "1 to 244 hosts per rack, not 300"),
    (["--model", "as-per-planet"], "invalid choice: 'as-per-planet'"),
    (["--route-reflectors", "2"], "the fabric topology does not take --route-reflectors"),
])
def test_a_bad_fabric_is_refused_before_anything_is_built(runs, untouched, args, message):
    done = subprocess.run([PYTHON, "-m", "calisim", "run", "-", "--topology", "fabric", *args], input="host1$ true\n",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("model", ["as-per-rack", "as-per-host", "downward-default"])
def test_every_fabric_router_config_passes_bird_p(model, tmp_path):
    topo = topologies.load("fabric", racks=3, hosts_per_rack=2, spines=2, model=model)
    assert topo.calico_hosts() == [f"host{i}" for i in range(1, 7)]
    assert topo.bgp_routers() == ["spine1", "spine2", "tor1", "tor2", "tor3"]
    for router in topo.bgp_routers():
        path = tmp_path / f"{router}.cfg"
        path.write_text(topo.nodeInfo(router)["bird"])
        bird.check(path)
    tor2 = topo.nodeInfo("tor2")["bird"]
    assert "neighbor 172.20.2.11 as" in tor2 and "neighbor 172.21.2.3 as 65100;" in tor2
    assert ("rr client;" in tor2) == (model == "as-per-rack")
    # Dual stack: each session again over IPv6, carrying the IPv6 routes.
    host3_v6 = tor2[tor2.index("protocol bgp host3_v6 "):]
    assert host3_v6.startswith("protocol bgp host3_v6 from fabric_peer {\n  neighbor fd00:172:20:2::11 as")
    assert "ipv6 { import all; export filter to_hosts6;" in host3_v6
    assert "protocol bgp spine2_v6 from fabric_peer {\n  neighbor fd00:172:21:2:2::2 as 65100;" in tor2
    assert "if ( net = fd00:172:20:2::/64 ) then accept;" in tor2
    spine1 = topo.nodeInfo("spine1")["bird"]
    assert "protocol bgp tor3_v6 from fabric_peer {\n  neighbor fd00:172:21:1:3::1 as" in spine1
    assert ("route ::/0 blackhole;" in spine1) == (model == "downward-default")
    assert topo.nodeInfo("tor2")["ipv6"] == [("rack2", "fd00:172:20:2::1/64"), ("spine1", "fd00:172:21:1:2::1/80"),
                                             ("spine2", "fd00:172:21:2:2::1/80")]
    assert topo.nodeInfo("host3")["ipv6"] == [("rack2", "fd00:172:20:2::11/64")]
    assert topo.nodeInfo("host3")["ipv6_default_route"] == "fd00:172:20:2::1"


def test_fabric_as_plan_and_calico_steps():
    topo = topologies.load("fabric", model="as-per-host")
    assert topo.node_run_command("host3") == "calicoctl node run --as 4200000003 --ip6 fd00:172:20:2::11"
    rack = topologies.load("fabric")
    assert [rack.node_run_command(h) for h in rack.calico_hosts()] == [
        "calicoctl node run --as 65001 --ip6 fd00:172:20:1::11", "calicoctl node run --as 65001 --ip6 fd00:172:20:1::12",
        "calicoctl node run --as 65002 --ip6 fd00:172:20:2::11", "calicoctl node run --as 65002 --ip6 fd00:172:20:2::12"]
    steps = rack.after_node_run()
    assert steps[0] == ("host1", "calicoctl config set nodeToNodeMesh off")
    assert "{scope: node, node: host3, peerIP: '172.20.2.1'}" in steps[1][1]
    assert "{scope: node, node: host3, peerIP: 'fd00:172:20:2::1'}" in steps[1][1]


@pytest.mark.parametrize("options, message", [
    ({"racks": 0}, "1 to 99 racks, not 0"),
    ({"racks": 100}, "1 to 99 racks, not 100"),
    ({"hosts_per_rack": 245}, "1 to 244 hosts per rack"),
    ({"spines": 0}, "1 to 254 spines"),
    ({"model": "as-per-planet"}, "unknown fabric model"),
])
def test_a_fabric_beyond_its_address_plan_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        topologies.load("fabric", **options)
