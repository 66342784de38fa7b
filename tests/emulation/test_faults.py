"""Faults on one live two-host cluster (shared by the module; every test puts back what it broke):
each verb of ``cluster.faults``, bad input that changes nothing, and the probe stream that
measures the outages."""

import json
import re
import subprocess
import time

import pytest

import topologies
from calisim.emulation import wait_until
from calisim.emulation.faults import NETEM_MISSING, FaultError, netem_available, nsexec
from calisim.probes import StreamProbe
from calisim.scenarios.seed import inspect

from tests.conftest import replay
from tests.emulation.conftest import SETUP, address, ipam_workload_addresses, live_world, running_workload_addresses, running_workloads

pytestmark = pytest.mark.emulation


@pytest.fixture(scope="module")
def world(module_runs):
    yield from live_world(topologies.load("two_host"), lambda cluster: replay(cluster, SETUP))


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


def test_link_down_stops_traffic_and_up_restores_default_route_ipv6_addresses_and_pinned_arp(healthy):
    faults, cluster = healthy.faults, healthy.cluster
    pinned = cluster.run("host2", "ip -4 neigh show dev host2-eth0 nud permanent").stdout
    assert "192.168.3.229 lladdr" in pinned
    faults.link("host2", "s1", "down")
    assert cluster.run("host2", "ip -4 neigh show dev host2-eth0 nud permanent").stdout == ""  # the kernel's flush
    assert faults.active() == [{"fault": "link-down", "link": ["host2", "s1"]}]
    assert "state DOWN" in cluster.run("host2", "ip link show host2-eth0").stdout
    assert healthy.stream(seconds=1).received == 0
    faults.link("host2", "s1", "up")
    assert "default via 192.168.3.1" in cluster.run("host2", "ip route").stdout
    # the kernel drops a downed link's IPv6 addresses (keep_addr_on_down is off): put back too
    assert "inet6 fd00:3::228/64 scope global" in cluster.run("host2", "ip -6 addr show dev host2-eth0").stdout
    assert "0% packet loss" in cluster.run("host1", "ping -6 -c 1 -W 5 fd00:3::228").stdout
    # the pinned ARP entries too: with the machine-wide ARP table full, relearning them fails
    assert cluster.run("host2", "ip -4 neigh show dev host2-eth0 nud permanent").stdout == pinned
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


def iperf3_bits_per_second(world) -> float:
    """One 2-second TCP iperf3 run from w1 to a server in echo2's network namespace."""
    server_pid = inspect(world.cluster, "host2", "echo2")["State"]["Pid"]
    server = subprocess.Popen(["nsenter", "-t", str(server_pid), "-n", "--", "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            done = subprocess.run(["nsenter", "-t", str(world.w1), "-n", "--", "iperf3", "-c", world.echo2_ip,
                                   "-t", "2", "-J"], capture_output=True, text=True, timeout=60)
            report = json.loads(done.stdout or "{}")
            if done.returncode == 0 and "sum_received" in report.get("end", {}):
                return report["end"]["sum_received"]["bits_per_second"]
            time.sleep(0.1)  # the server is not listening yet
        raise AssertionError(f"iperf3 failed: {done.stdout[-300:]}{done.stderr[-300:]}")
    finally:
        server.kill()
        server.wait()


def test_rate_limits_a_tcp_transfer(healthy):
    faults = healthy.faults
    faults.rate("host2", "s1", "1mbit")
    assert "tbf" in qdiscs(healthy, "host2") and "tbf" in qdiscs(healthy, "s1")
    try:
        limited = iperf3_bits_per_second(healthy)
    finally:
        faults.clear("host2", "s1")
    unlimited = iperf3_bits_per_second(healthy)
    assert 0.3e6 < limited < 1.3e6 and unlimited > 10 * limited, (limited, unlimited)


def proc_state(pid: int) -> str:
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]


def test_bird_killed_or_terminated_comes_back_established_with_connectivity(healthy):
    """Calico's test_node_status_resilience: BIRD dies, calico-node brings it back (a new PID),
    every session is Established again and the workloads talk."""
    faults, cluster = healthy.faults, healthy.cluster
    for verb in ("kill", "term", "kill"):
        old = faults._running_pid("host2", "bird")
        faults.signal("host2", "bird", verb)
        wait_until(lambda: faults._running_pid("host2", "bird") not in (None, old), 30, what="a new BIRD in host2")
        cluster.wait_for_mesh(timeout=60)
        healthy.reachable()
    assert cluster.run("host2", "calicoctl node status").stdout.count("Established") == 1
    assert [line.split(" ")[1:4] for line in fault_log(healthy)[-3:]] == [
        ["kill", "host2", "bird"], ["term", "host2", "bird"], ["kill", "host2", "bird"]]


def test_graceful_restart_keeps_a_stream_through_a_bird_kill(healthy):
    """SIGKILL gives the peer no Cease: under graceful restart host1 keeps host2's block while
    host2's BIRD restarts (and host2's kernel keeps its routes: `persist`), so hardly a probe is lost."""
    faults, cluster = healthy.faults, healthy.cluster
    probe = StreamProbe(healthy.w1, healthy.w2_ip, interval_ms=20, seconds=6)
    time.sleep(1.5)  # the stream is under way: now the fault, mid-stream
    old = faults._running_pid("host2", "bird")
    faults.kill("host2", "bird")
    wait_until(lambda: faults._running_pid("host2", "bird") not in (None, old), 30, what="a new BIRD in host2")
    result = probe.result()
    cluster.wait_for_mesh(timeout=60)
    assert result.received >= result.sent - 10 and result.longest_outage_ms < 500, result


def test_stop_and_cont_freeze_and_thaw_a_daemon(healthy):
    faults = healthy.faults
    pid = faults._running_pid("host2", "bird")
    faults.stop("host2", "bird")
    assert proc_state(pid) == "T"
    assert faults.active() == [{"fault": "daemon-stopped", "host": "host2", "daemon": "bird"}]
    assert json.loads(faults.state_path.read_text()) == faults.active()
    faults.cont("host2", "bird")
    assert proc_state(pid) != "T" and faults._running_pid("host2", "bird") == pid


def test_calico_node_killed_is_started_again_with_its_options(healthy):
    """Its IPv6 options too: an address autodetected by a method is autodetected by it again, and
    the settings of its environment (FELIX_IPV6SUPPORT=false) are kept, as a container's -e are."""
    faults, cluster = healthy.faults, healthy.cluster
    dual = cluster.run("host2", "FELIX_IPV6SUPPORT=false calicoctl node run --name 192.168.3.228 --ip6 autodetect "
                                "--ip6-autodetection-method 'interface=host2-eth.*'")
    assert dual.rc == 0 and "IPv6 address fd00:3::228" in dual.stdout, dual
    assert "IPv6 support disabled through environment" in dual.stdout
    node_log = cluster.host("host2").state_dir / "log" / "node.log"
    said = node_log.read_text().count("IPv6 support disabled through environment")
    cluster.wait_for_mesh(timeout=60)
    old = faults._running_pid("host2", "calico-node")
    faults.kill("host2", "calico-node")
    new = faults._running_pid("host2", "calico-node")
    assert new not in (None, old)
    assert ("--name 192.168.3.228 --backend bird --ip6 autodetect --ip6-autodetection-method interface=host2-eth.*"
            in open(f"/proc/{new}/cmdline").read().replace("\0", " "))
    assert "ipv6Address: fd00:3::228" in cluster.run("host1", "calicoctl get node 192.168.3.228 -o yaml").stdout
    assert node_log.read_text().count("IPv6 support disabled through environment") == said + 1
    cluster.wait_for_mesh(timeout=60)
    faults.term("host2", "calico-node")
    assert faults._running_pid("host2", "calico-node") not in (None, new)
    cluster.wait_for_mesh(timeout=60)


def test_partition_drops_underlay_traffic_until_healed(healthy):
    faults, cluster = healthy.faults, healthy.cluster
    faults.partition("host2")
    assert faults.active() == [{"fault": "partition", "host": "host2", "from": "everything"}]
    assert healthy.stream(seconds=1).received == 0
    assert "calico" in cluster.run("host2", "nft list tables").stdout  # Felix's table is untouched
    faults.heal()
    healthy.reachable()
    faults.partition("host2", ["host1"])
    assert healthy.stream(seconds=1).received == 0
    faults.heal("host2")
    healthy.reachable()
    # From etcd only: the dataplane carries on, the datastore is out of reach.
    faults.partition("host2", from_etcd=True)
    carried = healthy.stream(seconds=1)
    assert carried.received >= carried.sent - 2, carried
    cut = cluster.run("host2", "calicoctl get profile", timeout=60)
    assert cut.rc != 0 and "client: etcd cluster is unavailable or misconfigured" in cut.stdout + cut.stderr, cut
    faults.heal()
    assert cluster.run("host2", "calicoctl get profile").rc == 0


def test_etcd_down_workloads_keep_talking_new_ones_fail_and_all_resyncs(healthy):
    faults, cluster = healthy.faults, healthy.cluster
    faults.kill("host1", "etcd")
    assert faults.active() == [{"fault": "daemon-down", "host": "host1", "daemon": "etcd"}]
    carried = healthy.stream(seconds=2)
    assert carried.received >= carried.sent - 2, carried
    for host, command in (("host2", "docker run --net net1 --name w3 -tid busybox"),
                          ("host1", "calicoctl get profile")):
        failed = cluster.run(host, command, timeout=90)
        assert failed.rc != 0 and "client: etcd cluster is unavailable or misconfigured" in failed.stdout + failed.stderr, failed
    faults.start("host1", "etcd")
    wait_until(lambda: cluster.run("host2", "docker rm -f w3; docker run --net net1 --name w3 -tid busybox").rc == 0,
               60, interval=1, what="docker run after etcd came back")
    # host1's dockerd met refusals all through the outage: it is answered at once all the same
    # (gRPC's reconnect backoff would otherwise keep it away from etcd for seconds).
    listed = cluster.run("host1", "docker ps")
    assert listed.rc == 0, listed
    running = running_workloads(cluster)
    everything = {host: cluster.run(host, "docker ps -a").stdout for host in cluster.hosts}
    assert sorted(running) == ["host1/w1", "host2/echo2", "host2/w2", "host2/w3"], everything
    addresses = sorted(running.values())
    assert len(set(addresses)) == 4, running
    assert ipam_workload_addresses(cluster) == addresses  # no leak of the failed run, nothing twice
    assert cluster.run("host2", "docker rm -f w3").rc == 0
    assert ipam_workload_addresses(cluster) == running_workload_addresses(cluster)


def test_dockerd_stays_down_until_started(healthy):
    """Last in the module: the emulated dockerd started again (no live-restore) stops the containers
    the killed one left running, so the check after the test probes a container the new one runs."""
    faults, cluster = healthy.faults, healthy.cluster
    faults.kill("host2", "dockerd")
    assert faults.active() == [{"fault": "daemon-down", "host": "host2", "daemon": "dockerd"}]
    down = cluster.run("host2", "docker ps")
    assert down.rc != 0 and "Cannot connect to the Docker daemon" in down.stderr, down
    faults.start("host2", "dockerd")
    assert cluster.run("host2", "docker ps --format '{{.Names}}'").rc == 0
    started = cluster.run("host2", "docker run --net net1 --name w3 -tid busybox")
    assert started.rc == 0, started
    healthy.w2_ip = address(cluster, "host2", "w3")
