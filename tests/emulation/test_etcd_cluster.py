"""A 3-member etcd cluster (`two_host --etcd-members 3`, one cluster for the module): the hosts'
clients are given every member and carry on through the leader's loss with a short pause, fail
with Calico's datastore error while quorum is lost, write nothing then, and every agent carries
on once quorum is back."""

import re
import time

import pytest

import topologies
from calisim.emulation import wait_until
from calisim.emulation.faults import FaultError
from calisim.probes import probe_from

from tests.conftest import replay
from tests.emulation.conftest import SETUP, address, ipam_workload_addresses, live_world, running_workloads

pytestmark = pytest.mark.emulation

MEMBERS = ["etcd1", "etcd2", "etcd3"]
# calicoctl's answer after the leader is killed: ~1.5 s measured (an election after 1-2 s of
# missed heartbeats, etcd's default timers; benchmarks/faults.py), bounded here with margin.
LEADER_LOSS_BOUND = 8.0
UNAVAILABLE = "client: etcd cluster is unavailable or misconfigured"


@pytest.fixture(scope="module")
def world(module_runs):
    yield from live_world(topologies.load("two_host", etcd_members=3),
                          lambda cluster: replay(cluster, SETUP))


def no_address_twice(cluster) -> dict[str, str]:
    """The running workloads, each with an address of its own that IPAM holds for it and nothing else."""
    running = running_workloads(cluster)
    assert len(set(running.values())) == len(running), running
    assert ipam_workload_addresses(cluster) == sorted(running.values())
    return running


def test_every_client_is_given_every_member_and_faults_name_only_members(healthy):
    cluster, faults = healthy.cluster, healthy.faults
    endpoints = cluster.run("host1", "echo $ETCD_ENDPOINTS").stdout.strip()
    assert endpoints == "http://192.168.3.253:2379,http://192.168.3.252:2379,http://192.168.3.251:2379"
    assert cluster.etcd_leader() in MEMBERS
    for refused, says in ((lambda: faults.kill("etcd4", "etcd"), "unknown host 'etcd4'"),
                          (lambda: faults.kill("host1", "etcd"), "etcd does not run in host1 (it runs in etcd1, etcd2, "
                                                                 "etcd3)"),
                          (lambda: faults.kill("etcd1", "bird"), "etcd1 is an etcd member, not a Calico host")):
        with pytest.raises(FaultError, match=re.escape(says)):
            refused()
    assert faults.active() == []


def test_every_members_wal_is_on_the_labs_tmpfs_as_its_node_sees_it(healthy):
    """etcd's data in memory (no fsync waits on a disk): the tmpfs mounted before the nodes were
    made is the one their mount namespaces see, and the members' WALs are written there."""
    cluster = healthy.cluster
    for member in MEMBERS:
        wal = cluster.etcd_server(member).data_dir / "member" / "wal"
        seen = cluster.run(member, f"stat -f -c %T {wal} && ls {wal}")
        assert seen.rc == 0, seen.stderr
        kind, *files = seen.stdout.split()
        assert kind == "tmpfs" and any(name.endswith(".wal") for name in files), seen.stdout
        assert sorted(path.name for path in wal.iterdir()) == sorted(files)  # the controller's view: the same files


def test_a_leader_kill_keeps_calicoctl_ipam_and_docker_run_working(healthy):
    cluster, faults = healthy.cluster, healthy.faults
    leader = faults.signal_leader("kill")
    assert leader in MEMBERS and faults.active() == [{"fault": "daemon-down", "host": leader, "daemon": "etcd"}]
    killed = time.monotonic()
    answered = cluster.run("host1", "calicoctl get nodes")
    pause = time.monotonic() - killed
    assert answered.rc == 0 and answered.stdout.split()[1:] == ["192.168.3.228", "192.168.3.229"], answered
    assert pause < LEADER_LOSS_BOUND, f"calicoctl answered {pause:.1f} s after the leader's kill"
    for host, name in (("host1", "lk1"), ("host2", "lk2")):
        started = cluster.run(host, f"docker run --net net1 --name {name} -tid busybox")
        assert started.rc == 0, started
    assert wait_until(lambda: cluster.etcd_leader() not in (None, leader), 10, what="a new leader")
    running = no_address_twice(cluster)
    assert {"host1/lk1", "host2/lk2"} <= set(running)
    assert probe_from(healthy.w1, "icmp", address(cluster, "host2", "lk2"), count=1).reachable
    faults.start(leader, "etcd")
    for host, name in (("host1", "lk1"), ("host2", "lk2")):
        assert cluster.run(host, f"docker rm -f {name}").rc == 0
    no_address_twice(cluster)


def test_quorum_lost_refuses_and_writes_nothing_and_every_agent_carries_on_once_it_is_back(healthy):
    cluster, faults = healthy.cluster, healthy.faults
    before = no_address_twice(cluster)
    for member in MEMBERS[:2]:
        faults.kill(member, "etcd")
    carried = healthy.stream(seconds=2)  # the dataplane as programmed: workloads keep talking
    assert carried.received >= carried.sent - 2, carried
    profile = "{apiVersion: v1, kind: profile, metadata: {name: quorum}}"
    for host, command in (("host1", f"echo '{profile}' | calicoctl create -f -"),
                          ("host2", "docker run --net net1 --name q1 -tid busybox")):
        failed = cluster.run(host, command, timeout=90)
        assert failed.rc != 0 and UNAVAILABLE in failed.stdout + failed.stderr, failed
    for member in MEMBERS[:2]:
        faults.start(member, "etcd")
    assert cluster.run("host1", "calicoctl get profile quorum").stdout.split()[1:] == []  # nothing was written
    assert "q1" not in cluster.run("host2", "docker ps -a --format '{{.Names}}'").stdout.split()
    assert no_address_twice(cluster) == before
    for host, name in (("host1", "q1"), ("host2", "q2")):  # every node's agents follow etcd again
        started = cluster.run(host, f"docker run --net net1 --name {name} -tid busybox")
        assert started.rc == 0, started
    wait_until(lambda: probe_from(healthy.w1, "icmp", address(cluster, "host2", "q2"), count=1).reachable, 30,
               interval=0.5, what="w1 reaching the workload started once quorum was back")
    assert len(no_address_twice(cluster)) == len(before) + 2
    for host, name in (("host1", "q1"), ("host2", "q2")):
        assert cluster.run(host, f"docker rm -f {name}").rc == 0
