"""Calico hosts on other servers through the API: the placement asked for and refused, the seed's
two hosts on two simulated servers (host2 a remote host: its shell, name, files and commands on
server2, its link to the segment a VXLAN pair over the underlay), route reflectors over three
servers, a fabric with a rack a server, and 30 hosts behind two reflectors over three servers."""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import topologies
from tests.conftest import running_daemons
from calisim.emulation import Cluster, sandbox, wait_until
from calisim.scenarios import transcript
from calisim.scenarios.bundled import SCENARIOS
from calisim.scenarios.seed import inspect
from calisim.emulation.cluster import ClusterError
from calisim.docker.service import Dockerd
from calisim.emulation import remote
from calisim.emulation.faults.servers import in_node, run_there
from calisim.emulation.remote import LINK_MTU, dockerds_ready_script
from calisim.node import bird
from calisim.process import pids
from calisim.servers.sim import ServerError
from calisim.servers.watchdog import ServerLost

ICMP_HEADERS = 28  # IPv4 20 + ICMP 8: a ping of LINK_MTU - 28 bytes fills a packet of LINK_MTU
IPIP_OVERHEAD = 20  # Calico's IPIP: an outer IPv4 header


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


def test_dockerds_are_awaited_on_their_server_until_each_socket_or_death(tmp_path):
    """The script a server runs for its dockerds' start (here with bash, as root's shell there):
    done once every socket is there; a dockerd whose process is gone named with its log's last
    line; those still to come named after a second."""
    dockerds = {name: Dockerd(tmp_path / name, name=f"dockerd in {name}") for name in ("host2", "host3")}
    for dockerd in dockerds.values():
        dockerd.socket.parent.mkdir(parents=True)
        dockerd.log.parent.mkdir()
        dockerd.log.write_text("starting\ncannot read /etc/docker/daemon.json\n")
    gone = subprocess.Popen(["true"])
    gone.wait()

    def run(pids):
        return subprocess.run(["bash", "-c", dockerds_ready_script(dockerds, pids)], capture_output=True, text=True)
    dockerds["host2"].socket.touch()
    waiting = run({"host2": gone.pid, "host3": os.getpid()})
    assert (waiting.returncode, waiting.stdout) == (1, "host3\n")  # host2's socket is there: its PID is not asked
    died = run({"host2": gone.pid, "host3": gone.pid})
    assert (died.returncode, died.stdout) == (3, "host3\ncannot read /etc/docker/daemon.json\n")
    dockerds["host3"].socket.touch()
    assert run({"host2": gone.pid, "host3": gone.pid}).returncode == 0


class StoppedServers:
    """SimServers' stand-in: no server to gather from, and whether stop() was called."""

    servers: list = []
    stopped = False

    def stop(self) -> list[str]:
        self.stopped = True
        return []


def test_the_servers_stop_even_when_a_stop_by_pid_on_one_fails(monkeypatch):
    def unanswered(_processes):
        raise ServerError("server2: `kill -TERM 42` did not finish within 20s")

    monkeypatch.setattr(remote.processes, "stop", unanswered)
    on_servers = object.__new__(remote.ServersOfRun)
    on_servers.watchdog, on_servers.daemons, on_servers.zygotes = None, {}, []
    on_servers.sim = StoppedServers()
    with pytest.raises(ServerError, match="^server2: `kill -TERM 42`"):
        on_servers.stop()
    assert on_servers.sim.stopped


@pytest.mark.emulation
def test_route_reflectors_pass_their_checks_over_three_servers(untouched, runs):
    """The reflectors and etcd on server1, two hosts on server2, one on server3: BGP to the
    reflectors crosses servers, and the outcome's probes from host3's workload run on server2.
    Before the module's shared cluster: one sandbox holds one run's servers at a time."""
    scenario = SCENARIOS["route-reflectors"]
    with Cluster(scenario.load_topology(), servers="sim:3", place={"host4": "server3"}) as cluster:
        assert {cluster.server_of(node) for node in ("rr1", "rr2", "host1", "host3", "host4")} == {
            "server1", "server2", "server3"}
        failed = [result for result in transcript.run(cluster, transcript.parse(scenario.text())) if not result.passed]
        assert not failed, failed[0]
        _, outcome = scenario.check(cluster)
        assert outcome["mismatches"] == []
        assert [pair["probe"]["received"] for pair in outcome["pairs"]] == [4] * len(outcome["pairs"])


def workload(cluster, host: str, name: str) -> tuple[int, str]:
    """A container's PID (on its host's server) and its address."""
    found = inspect(cluster, host, name)
    return found["State"]["Pid"], next(iter(found["NetworkSettings"]["Networks"].values()))["IPAddress"]


def ping_with_df(cluster, host: str, pid: int, destination: str, packet: int):
    """One ping of packet bytes (IPv4 and ICMP headers included), DF set, from a workload of host
    (run on host's server, where pid means that workload)."""
    return cluster.run(host, f"nsenter -t {pid} -n ping -c1 -W3 -M do -s {packet - ICMP_HEADERS} {destination}")


@pytest.mark.emulation
def test_fabric_as_per_rack_passes_its_checks_with_a_rack_a_server(untouched, runs):
    """Rack 1 (etcd in host1), the spines and the first ToR on server1, rack 2 with its ToR on
    server2: the ToR-spine links cross servers, so do BGP between ToRs and spines, rack 2's etcd
    and the workloads' traffic, unencapsulated (the fabric's pools have no IPIP) at the link's full
    MTU with DF; then a link impaired at its end on server2."""
    scenario = SCENARIOS["fabric-as-per-rack"]
    with Cluster(scenario.load_topology(), servers="sim:3") as cluster:
        assert {node: cluster.server_of(node) for node in ("host1", "tor1", "spine1", "host3", "host4", "tor2")} == {
            "host1": "server1", "tor1": "server1", "spine1": "server1",
            "host3": "server2", "host4": "server2", "tor2": "server2"}
        failed = [result for result in transcript.run(cluster, transcript.parse(scenario.text())) if not result.passed]
        assert not failed, failed[0]
        _, outcome = scenario.check(cluster)
        assert outcome["mismatches"] == []
        w1, (_, w3) = workload(cluster, "host1", "w1"), workload(cluster, "host3", "w3")
        full = ping_with_df(cluster, "host1", w1[0], w3, LINK_MTU)
        assert " 0% packet loss" in full.stdout, full
        assert "Frag needed and DF set" in ping_with_df(cluster, "host1", w1[0], w3, LINK_MTU + 1).stdout
        diagnostics = cluster.diagnose().read_text()  # tor2's BIRD, asked on server2
        tor2 = diagnostics.split("### tor2$ birdc -s /var/run/calico/bird.ctl show protocols\n")[1].split("###")[0]
        assert re.search(r"^spine1 +BGP .* Established", tor2, re.MULTILINE), tor2
        loss_at_an_end_on_server2(cluster)


def loss_at_an_end_on_server2(cluster) -> None:
    """100 % loss on tor2-spine1, impaired at tor2's end (on server2): the eBPF program loaded and
    pinned there, in server2's own run directory and none in this one's; spine1 unanswered from
    tor2, answered once the loss is cleared, and the pins gone with it."""
    tor2 = cluster.host("tor2")
    link = cluster.net.linksBetween(tor2, cluster.host("spine1"))[0]
    ends = (link.intf1, link.intf2) if link.intf1.node is tor2 else (link.intf2, link.intf1)
    pins, ping = cluster.faults.pin_root, ("ping", "-c", "3", "-i", "0.2", "-W", "1", ends[1].IP())
    pinned = f"tor2-{ends[0].name}"  # beside the bpffs' own maps.debug and progs.debug
    cluster.faults.loss("tor2", "spine1", 100)
    assert pinned in run_there(tor2, f"ls {pins}").split() and not (pins / pinned).exists()
    assert " 100% packet loss" in in_node(tor2, *ping, check=False).stdout
    cluster.faults.clear("tor2", "spine1")
    wait_until(lambda: " 0% packet loss" in in_node(tor2, *ping, check=False).stdout, 20, interval=0.2,
               what="tor2's pings of spine1 answered again")
    assert pinned not in run_there(tor2, f"ls {pins}").split()


POOLS = ("echo '[{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, spec: {ipip: {enabled: true}}}, "
         "{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.30.0.0/16}, spec: {vxlan: {enabled: true}}}]' "
         "| calicoctl create -f -")
VXLAN_CALICO_OVERHEAD = 50  # Calico's VXLAN: outer IPv4, UDP, VXLAN and inner Ethernet headers


@pytest.mark.emulation
def test_thirty_hosts_behind_two_reflectors_pass_their_checks_over_three_servers(untouched, runs):
    """flat --hosts 30 --route-reflectors 2 on sim:3: hosts 1-10, the reflectors and etcd on
    server1, 11-20 on server2, 21-30 on server3.  Every host's two sessions (one a reflector)
    and each reflector's 31 cross servers; then an IPIP and a VXLAN pool, and workloads on the
    three servers reaching each other at the full MTU their encapsulation leaves, with DF.  A
    dockerd only in the hosts with workloads: the sessions are the point of thirty hosts."""
    with Cluster(topologies.load("flat", 30, route_reflectors=2), servers="sim:3", docker=False) as cluster:
        assert [cluster.server_of(host) for host in ("rr1", "host10", "host11", "host20", "host21", "host30")] == [
            "server1", "server1", "server2", "server2", "server3", "server3"]
        cluster.start_nodes()
        wait_until(lambda: all(cluster.bgp_established(host) == 2 for host in cluster.hosts), 120,
                   interval=0.5, what="two sessions Established on every host, one a reflector")
        for reflector in ("rr1", "rr2"):
            established = [peer for peer in bird.bgp_peer_statuses(cluster.bird(reflector).protocols())
                           if peer.info.startswith("Established") and "." in peer.peer_ip]
            assert len(established) == 31, (reflector, established)  # 30 clients and the other reflector, over IPv4
        for host in ("host1", "host11", "host21"):
            cluster.start_dockerd(host)
        steps = [("host1", POOLS),
                 ("host1", "docker network create --driver calico --ipam-driver calico-ipam --subnet 10.10.0.0/16 ipip"),
                 ("host1", "docker network create --driver calico --ipam-driver calico-ipam --subnet 10.30.0.0/16 vxlan"),
                 ("host1", "docker run --net ipip --name i1 -tid busybox"),
                 ("host11", "docker run --net ipip --name i11 -tid busybox"),
                 ("host1", "docker run --net vxlan --name v1 -tid busybox"),
                 ("host21", "docker run --net vxlan --name v21 -tid busybox")]
        for host, command in steps:
            result = cluster.run(host, command)
            assert result.rc == 0, result
        (i1, _), (_, i11) = workload(cluster, "host1", "i1"), workload(cluster, "host11", "i11")
        (_, v1), (v21, _) = workload(cluster, "host1", "v1"), workload(cluster, "host21", "v21")

        def reaches(host: str, pid: int, destination: str, packet: int) -> bool:
            return " 0% packet loss" in ping_with_df(cluster, host, pid, destination, packet).stdout

        wait_until(lambda: reaches("host1", i1, i11, LINK_MTU - IPIP_OVERHEAD), 60, interval=0.5,
                   what="i1 (server1) reaching i11 (server2) over IPIP at full size with DF")
        assert "Frag needed and DF set" in ping_with_df(cluster, "host1", i1, i11, LINK_MTU + 1).stdout
        wait_until(lambda: reaches("host21", v21, v1, LINK_MTU - VXLAN_CALICO_OVERHEAD), 60, interval=0.5,
                   what="v21 (server3) reaching v1 (server1) over VXLAN at full size with DF")


def listening_sshd(server) -> int:
    return next(pid for pid in pids.children(server.init_pid) if b"[listener]" in Path(f"/proc/{pid}/cmdline").read_bytes())


@pytest.mark.emulation
def test_a_server_whose_sshd_dies_ends_a_calico_run_naming_it_and_nothing_is_left(untouched, runs):
    """host2's server loses its sshd while a step runs on host2: the run ends within 30 s with one
    line naming server2, and once it has stopped nothing runs on either server (host2's calico-node,
    BIRD and zygote were on server2 and are stopped there by PID, through the connections still
    open).  Before the module's shared cluster: one sandbox holds one run's servers at a time."""
    with pytest.raises(ServerLost) as lost:
        with Cluster(topologies.load("two_host"), servers="sim:2", docker=False) as cluster:
            cluster.start_nodes()
            servers = cluster.on_servers.sim.servers
            assert cluster.run("host2", "pgrep -x bird").rc == 0  # host2's BIRD runs on server2
            os.kill(listening_sshd(servers[1]), signal.SIGKILL)
            began = time.monotonic()
            cluster.run("host2", "sleep 120", timeout=150)  # only the watchdog ends this in time
    assert time.monotonic() - began < 30
    assert str(lost.value) == "server2: sshd does not answer on 198.18.0.3:22 (Connection refused)"
    for server in servers:  # each server's PID namespace (kept by inode: its PID 1 is gone too)
        assert pids.in_namespaces({server.pid_namespace}, "pid") == [], f"{server.name} still runs processes"


@pytest.fixture(scope="module")
def seed_on_two_servers(module_runs):
    """The seed's topology with host2 on server2, for the whole module."""
    before, daemons = sandbox.snapshot(), running_daemons()
    with Cluster(topologies.load("two_host"), servers="sim:2") as cluster:
        yield cluster
    assert running_daemons() == daemons, "processes left running"
    assert sandbox.snapshot() == before, "the caller's namespace changed"


@pytest.mark.emulation
def test_a_host_of_another_server_is_a_calico_host_there(seed_on_two_servers):
    cluster = seed_on_two_servers
    assert [cluster.server_of(host) for host in cluster.hosts] == ["server1", "server2"]
    assert cluster.run("host2", "hostname; cat /etc/hostname").stdout == "host2\nhost2\n"
    assert cluster.run("host2", "echo $ETCD_ENDPOINTS; pwd").stdout.split() == [
        cluster.etcd_endpoint, str(cluster.host("host2").home)]
    # host2's files are on server2, at the run directory's path there: none of them here
    assert not cluster.run_dir.host("host2").exists()
    mounts = cluster.run("host2", "findmnt -no TARGET -M /etc && findmnt -no TARGET -M /var/run/calico")
    assert mounts.stdout == "/etc\n/run/calico\n", mounts  # /var/run is a link to /run
    assert cluster.run("host2", "test -S /run/docker/docker.sock").rc == 0  # its dockerd, on server2
    host1 = cluster.topo.host_ip("host1")
    full = cluster.run("host2", f"ping -c1 -W3 -M do -s {LINK_MTU - ICMP_HEADERS} {host1}")
    assert " 0% packet loss" in full.stdout, full
    too_big = cluster.run("host2", f"ping -c1 -W2 -M do -s {LINK_MTU - ICMP_HEADERS + 1} {host1}")
    assert too_big.rc != 0
    version = cluster.run("host2", f"python -c \"import urllib.request as u; "
                                   f"print(u.urlopen('{cluster.etcd_endpoint}/version').read().decode())\"")
    assert '"etcdserver"' in version.stdout, version  # etcd on server1 answers host2 on server2


@pytest.mark.emulation
def test_a_veth_within_a_server_has_ends_at_indexes_of_their_own(seed_on_two_servers):
    """As on one machine (see test_topology): both ends at index 2 made the kernel apply the
    bridge port's carrier late, up to a second."""
    cluster = seed_on_two_servers
    veths = []
    for host in cluster.hosts:
        link = json.loads(cluster.run(host, f"ip -j -d link show {host}-eth0").stdout)[0]
        if link.get("linkinfo", {}).get("info_kind") == "veth":
            veths.append(host)
            assert link.get("link_index") not in (None, link["ifindex"]), link  # left out when equal
    assert veths, "no host of the seed has a veth within its server"


@pytest.mark.emulation
def test_the_seed_transcript_passes_across_servers(seed_on_two_servers):
    cluster = seed_on_two_servers
    steps = transcript.parse(SCENARIOS["two-host"].text())
    failed = [result for result in transcript.run(cluster, steps) if not result.passed]
    assert not failed, failed[0]
    assert [cluster.bgp_established(host) for host in cluster.hosts] == [1, 1]  # host2's BIRD through ssh
    workload_a = inspect(cluster, "host1", "workload-A")["State"]["Pid"]
    workload_e = next(iter(inspect(cluster, "host2", "workload-E")["NetworkSettings"]["Networks"].values()))

    def ping_with_df(size: int):
        return cluster.run("host1", f"nsenter -t {workload_a} -n ping -c1 -W3 -M do -s {size - ICMP_HEADERS} "
                                    f"{workload_e['IPAddress']}")

    full = ping_with_df(LINK_MTU - IPIP_OVERHEAD)  # IPIP inside the underlay's VXLAN, unfragmented
    assert " 0% packet loss" in full.stdout, full
    assert "Frag needed and DF set" in ping_with_df(LINK_MTU + 1).stdout

