"""Faults on a host of another server: the seed's two hosts on two simulated servers (host2 on
server2, its own PID namespace: a PID of it names another process here, or none), its daemons
found by their pid files there, signalled and started again there, its link taken down through
its shell there, its link impaired and the host partitioned (the eBPF program at the link's far
end, s1's port; one loaded on an end of another server: tests/emulation/test_remote.py's
fabric), the host crashed and booted on its server, and its dockerd (forked by server2's
node zygote) killed and started again, live-restore keeping its workload.  One cluster for the
module; a short BGP hold time, so host1 lets go of a crashed host2 soon.  Without root: what a
remote node's commands become, and the one line refusing what is not built across servers."""

from dataclasses import dataclass

import pytest

import topologies
from calisim.cli.fault import run_command
from calisim.emulation import wait_until
from calisim.emulation.faults import FaultError, servers
from calisim.node.bird import Timers
from calisim.probes import probe_from

from tests.conftest import replay
from tests.emulation.conftest import SETUP, address, live_world



@dataclass
class EchoNode:
    """A node of another server whose "ssh" echoes the command it would run there."""

    name: str = "host2"
    server: str = "server2"
    pid: int = 4242  # on server2
    isRemote: bool = True

    @staticmethod
    def ssh_command() -> list[str]:
        return ["echo"]


def test_a_remote_nodes_command_is_spelt_for_its_server_and_refusals_name_it():
    node = EchoNode()
    assert servers.in_node(node, "ip", "link", "set", "dev", "host2-eth0", "down").stdout == \
        "nsenter -t 4242 -n -- ip link set dev host2-eth0 down\n"
    assert servers.in_node(node, "umount", "/var/run/calico/bpf", namespaces=("-m",)).stdout.startswith(
        "nsenter -t 4242 -m -- umount")
    assert str(servers.not_yet(node, "a crash of an etcd node")) == \
        "a crash of an etcd node on host2 (server2): not supported on another server yet"


@pytest.fixture(scope="module")
def world(module_runs):
    yield from live_world(topologies.load("two_host"), lambda cluster: replay(cluster, SETUP),
                          servers="sim:2", bgp_timers=Timers(hold=9))


def pid_of(world, daemon: str) -> int | None:
    return world.faults._running_pid("host2", daemon)


def forked_by_servers_zygote(world, pid: int) -> bool:
    """Whether pid's parent on host2's server is that server's node zygote (its dockerd is one
    of its children there, as here, not an interpreter of its own started over ssh)."""
    host2 = world.cluster.host("host2")
    parent = int(servers.read_text(host2, f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[1])
    return "calisim.node.zygote" in servers.cmdline(host2, parent)


@pytest.mark.emulation
def test_host2_runs_on_the_other_server(world):
    assert [world.cluster.server_of(host) for host in ("host1", "host2")] == ["server1", "server2"]
    host2 = world.cluster.host("host2")
    assert servers.on_other_server(host2) and not servers.on_other_server(world.cluster.host("host1"))
    # its calico-node's PID is one of server2's: that server's /proc knows it as calico-node
    pid = pid_of(world, "calico-node")
    assert "calisim.node" in servers.cmdline(host2, pid)
    dockerd = pid_of(world, "dockerd")  # forked by server2's zygote, with dockerd's own command line
    assert forked_by_servers_zygote(world, dockerd) and servers.cmdline(host2, dockerd)[1:3] == ["-m", "calisim.docker"]


@pytest.mark.emulation
def test_calico_node_killed_on_host2_is_run_again_there(healthy):
    old = {daemon: pid_of(healthy, daemon) for daemon in ("calico-node", "bird")}
    assert None not in old.values()
    assert run_command(healthy.faults, ["kill", "host2", "calico-node"]) == "fault kill host2 calico-node: done"
    host2 = healthy.cluster.host("host2")
    assert not any(servers.alive(host2, pid) for pid in old.values())  # both gone on server2
    assert pid_of(healthy, "calico-node") not in (None, old["calico-node"])
    for host in ("host2", "host1"):  # host2's new BIRD (read through server2) has it Established again
        wait_until(lambda: healthy.cluster.bgp_established(host) == 1, 60, interval=0.5, what=f"{host}'s session back")
    assert healthy.faults.active() == []


@pytest.mark.emulation
def test_dockerd_killed_on_host2_stays_down_until_started(healthy):
    """The new dockerd (no live-restore) would stop what the killed one left running, busybox's
    sh after docker's 10 s: host2's workloads go first, and w2 is run again on the new one."""
    faults, cluster = healthy.faults, healthy.cluster
    assert cluster.run("host2", "docker rm -f w2 echo2").rc == 0
    old = pid_of(healthy, "dockerd")
    faults.kill("host2", "dockerd")
    assert faults.active() == [{"fault": "daemon-down", "host": "host2", "daemon": "dockerd"}]
    assert pid_of(healthy, "dockerd") is None and cluster.run("host2", "docker ps -q").rc != 0
    with pytest.raises(FaultError, match="^dockerd is not running in host2$"):
        faults.term("host2", "dockerd")
    faults.start("host2", "dockerd")
    assert pid_of(healthy, "dockerd") not in (None, old) and forked_by_servers_zygote(healthy, pid_of(healthy, "dockerd"))
    assert cluster.run("host2", "docker version -f '{{.Server.Version}}'").rc == 0
    assert "start host2 dockerd" in faults.log_path.read_text()
    assert cluster.run("host2", "docker run --net net1 --name w2 -tid busybox").rc == 0
    healthy.w2_ip = address(cluster, "host2", "w2")


@pytest.mark.emulation
def test_link_of_host2_down_and_up(healthy):
    """host2's end of its link is on server2: taken down (and up, its addresses and routes put
    back) through nsenter there."""
    faults = healthy.faults
    faults.link("host2", "s1", "down")
    assert "state DOWN" in healthy.cluster.run("host2", "ip link show host2-eth0").stdout
    assert not probe_from(healthy.w1, "icmp", healthy.w2_ip, count=1).reachable
    faults.link("host2", "s1", "up")
    assert healthy.cluster.run("host2", "ip -4 route show default").stdout.startswith("default via 192.168.3.1")


@pytest.mark.emulation
def test_loss_on_host2s_link_seen_from_host1_then_cleared(healthy):
    """All of host2's underlay traffic lost (its link crosses the underlay to s1): host1's pings
    of host2 go unanswered, and are answered again once the loss is cleared."""
    faults, cluster = healthy.faults, healthy.cluster
    ping = "ping -c 4 -i 0.2 -W 1 192.168.3.228"
    faults.loss("host2", "s1", 100)
    assert " 100% packet loss" in cluster.run("host1", ping).stdout
    faults.clear("host2", "s1")
    wait_until(lambda: " 0% packet loss" in cluster.run("host1", ping).stdout, 20, interval=0.2,
               what="host1's pings of host2 answered again")


@pytest.mark.emulation
def test_partition_of_host2_drops_its_session_until_healed(healthy):
    faults, cluster = healthy.faults, healthy.cluster
    faults.partition("host2")
    assert faults.active() == [{"fault": "partition", "host": "host2", "from": "everything"}]
    assert not probe_from(healthy.w1, "icmp", healthy.w2_ip, count=2).reachable
    wait_until(lambda: cluster.bgp_established("host1") == 0, 40, interval=0.2, what="host1's session ending")
    faults.heal("host2")
    wait_until(lambda: cluster.bgp_established("host1") == 1, 60, interval=0.5, what="host1's session back")


@pytest.mark.emulation
def test_crash_and_boot_of_host2_on_its_server(world):
    faults, cluster = world.faults, world.cluster
    host2 = cluster.host("host2")
    before = {daemon: pid_of(world, daemon) for daemon in ("bird", "calico-node", "dockerd")}
    faults.crash("host2")
    assert faults.active() == [{"fault": "crashed", "host": "host2"}]
    assert not [pid for pid in before.values() if servers.alive(host2, pid)]
    wait_until(lambda: cluster.bgp_established("host1") == 0, 40, interval=0.2, what="host1's session ending")
    faults.boot("host2")
    assert servers.read_text(host2, host2.state_dir / "run" / "calico-node.pid") == ""  # emptied on server2
    assert cluster.run("host2", "docker rm w2").rc == 0  # dockerd answers again, its container dead
    started = cluster.run("host2", "calicoctl node run --name 192.168.3.228")
    assert started.rc == 0, started
    # tunl0 made before BIRD starts (BIRD's kernel routes of the IPIP pool name it; one exported
    # before tunl0 was up was dropped for good, and w1 never reached w2 again)
    assert "Assigned IPIP tunnel address 10.10." in started.stdout, started.stdout
    cluster.wait_for_mesh(timeout=60)
    assert cluster.run("host2", "docker run --net net1 --name w2 -tid busybox").rc == 0
    world.w2_ip = address(cluster, "host2", "w2")
    world.reachable()
    assert faults.active() == []


@pytest.mark.emulation
def test_live_restore_on_host2_keeps_its_workload_through_a_dockerd_kill(healthy):
    """Last in the module (an adopted container is no descendant of host2's processes, which a
    crash kills): with live-restore in host2's daemon.json (in its view, on server2), w2 runs on
    while its dockerd is down, and the next one server2's zygote forks adopts it with its PID."""
    faults, cluster = healthy.faults, healthy.cluster
    assert cluster.run("host2", """echo '{"live-restore": true}' > /etc/docker/daemon.json""").rc == 0
    faults.kill("host2", "dockerd")
    faults.start("host2", "dockerd")  # reads it
    before = cluster.run("host2", "docker inspect -f '{{.State.Pid}}' w2").stdout.strip()
    faults.kill("host2", "dockerd")
    healthy.reachable()  # w1 reaches w2 with no dockerd in host2
    faults.start("host2", "dockerd")
    adopted = cluster.run("host2", "docker inspect -f '{{.State.Status}} {{.State.Pid}}' w2")
    assert adopted.stdout.split() == ["running", before], adopted
    assert cluster.run("host2", "docker exec w2 ping -c 1 -W 2 " + address(cluster, "host1", "w1")).rc == 0
    assert cluster.run("host2", "rm /etc/docker/daemon.json").rc == 0
