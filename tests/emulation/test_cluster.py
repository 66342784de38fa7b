"""Emulated clusters end to end through the API: a 10-host mesh (and the wait for it), node errors and rejected input,
clean-up after errors (also a run without the hosts' calicoctl built), nodes living through a BIRD crash and an etcd restart, and proof that the
caller's namespace is untouched.

Last, fault schedules as a property, on one live cluster: a hypothesis state machine mixes workload
churn (docker run, stop, start, rm -f) with faults (BIRD and calico-node kills, link flaps, etcd
restarts, partitions and heals) and checks after every step that

* no address is assigned twice (IPAM's assignments and the running containers' addresses);
* isolation between networks is never broken, even mid-fault (no cross-network echo answers);
* IPAM holds exactly the running workloads' addresses (a stopped container has left its network);
* the faults in force are the ones the schedule left (a partition), nothing else;
* with no fault in force, every same-network pair answers within HEAL_SECONDS.

Rules choose only from the machine's own model (its workloads, its partition), never from the
live cluster, so hypothesis replays a schedule exactly.  Sizes follow CALISIM_HYPOTHESIS_PROFILE:
ci = 4 short schedules on two hosts, scale = longer ones on three.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import Phase, settings
from hypothesis.errors import Flaky
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

import topologies
from calisim.emulation import Cluster, ClusterError, wait_until
from calisim.node import zygote_client
from calisim.scenarios.seed import inspect

from tests.conftest import replay
from tests.emulation.conftest import ipam_workload_addresses

pytestmark = pytest.mark.emulation


def test_ten_host_flat_mesh_through_the_api(untouched, runs):
    with Cluster(topologies.load("flat", 10)) as cluster:
        assert cluster.run("host7", "hostname").stdout == "host7\n"
        # The underlay's ARP entries are pinned: the kernel's shared table cannot hold a big mesh.
        neighbours = cluster.run("host7", "ip neigh show nud permanent").stdout.splitlines()
        assert sorted(line.split()[0] for line in neighbours) == sorted(f"172.16.0.{i}" for i in range(1, 11) if i != 7)
        cluster.start_nodes()
        cluster.wait_for_mesh(timeout=60)
        established = sum(cluster.bgp_established(host) for host in cluster.hosts)
        assert established == 2 * 45  # each of the 45 sessions counted at both ends
        names = cluster.run("host3", "calicoctl get node").stdout.split()
        assert names == ["NAME"] + [f"host{i}" for i in sorted(range(1, 11), key=str)]
        with cluster.datastore() as ds:
            assert ds.get("/calico/bgp/v1/host/host10/ip_addr_v4").value == "172.16.0.10"


NODE_ERRORS = """
host1$ calicoctl node run
host2! calicoctl node run --ip 192.168.3.229/24
host2$ calicoctl node run --ip 192.168.3.229/24 2>&1 | grep -q "Calico node 'host1' is already using the IPv4 address 192.168.3.229"
host2! calicoctl node run --as 0
host2! calicoctl node status
host2$ calicoctl node status | grep -qx 'Calico process is not running.'
host1! calicoctl delete ipPool 10.99.0.0/16
host1$ echo '{"kind": "ipPool", "apiVersion": "v1", "metadata": {"cidr": "10.0.0.0/26"}, "spec": {}}' | calicoctl create -f -
host1! echo '[{"kind": "ipPool", "apiVersion": "v1", "metadata": {"cidr": "10.1.0.0/16"}}, {"kind": "node"}]' | calicoctl create -f -
host1$ calicoctl get ipPool | grep -c / | grep -x 3
host1$ calicoctl node run
host1$ test "$(hostname)" = host1 && test "$ETCD_ENDPOINTS" = http://192.168.3.229:2379
host1$ test -S /run/docker/plugins/calico.sock && test -S /run/docker/plugins/calico-ipam.sock
host1$ python -c "from calisim.libnetwork import call_plugin as c; assert c('/run/docker/plugins/calico-ipam.sock', 'Plugin.Activate') == (200, {'Implements': ['IpamDriver']})"
host2! test -e /run/docker/plugins/calico.sock
"""


def test_node_errors_and_rejected_input_through_the_api(untouched, runs):
    with Cluster(topologies.load("two_host")) as cluster:
        results = replay(cluster, NODE_ERRORS, keep_going=True)
    assert all(r.passed for r in results)


def test_an_exception_inside_the_cluster_stops_everything(untouched, runs):
    with pytest.raises(RuntimeError, match="boom"):
        with Cluster(topologies.load("two_host")) as cluster:
            cluster.start_nodes()
            cluster.run("host2", "sleep 300 > /dev/null 2>&1 &")
            wait_until(lambda: cluster.bgp_established("host1") == 1, 20, what="the mesh")
            raise RuntimeError("boom")


def test_a_run_without_the_hosts_calicoctl_built_says_so_and_leaves_nothing(untouched, runs, monkeypatch):
    monkeypatch.setattr(zygote_client, "CALICOCTL", "/nonexistent/build/node/calicoctl")
    cluster = Cluster(topologies.load("two_host"))
    with pytest.raises(ClusterError, match=r"^the hosts' calicoctl /nonexistent/build/node/calicoctl is not built: run"):
        cluster.start()
    assert not (cluster.bin_dir / "calicoctl").exists()


class Stops:
    """A stage's stand-in: records that it ran."""

    def __init__(self, stages: list[str], name: str):
        self.stages, self.name = stages, name

    def stop(self) -> list[str]:
        self.stages.append(self.name)
        return []


def test_every_stop_stage_runs_though_stopping_the_hosts_processes_failed():
    """Servers, network and etcd still stop (in that reverse order) and the failure is raised."""
    stages: list[str] = []
    cluster = object.__new__(Cluster)
    cluster.net, cluster.on_servers, cluster.zygote = Stops(stages, "network"), Stops(stages, "servers"), None
    cluster.topo = topologies.load("two_host")
    cluster.host = lambda name: name
    cluster._stop_etcd_for_good = lambda *alongside: stages.append("etcd")

    def unanswered(hosts):
        raise ClusterError("host2: calico-node did not stop")

    cluster._stop_host_processes = unanswered
    with pytest.raises(ClusterError, match="host2: calico-node did not stop"):
        cluster.stop()
    assert stages == ["etcd", "network", "servers"]
    assert cluster.net is None and cluster.on_servers is None


def test_the_mesh_wait_asks_only_lagging_hosts_until_one_last_round_finds_every_session_up():
    """Hosts seen complete are not asked again until none lags; then one round over every host
    must find all of them complete (host1 dropped a session meanwhile: it is waited for again)."""
    cluster = object.__new__(Cluster)
    cluster.topo = topologies.load("flat", 3)
    cluster.progress = lambda *progress: None
    cluster.expected_sessions = lambda: dict.fromkeys(cluster.hosts, 2)
    counts = {"host1": iter([2, 1, 2, 2]), "host2": iter([2, 2, 2]), "host3": iter([0, 1, 2, 2, 2])}
    asked: list[str] = []
    cluster.bgp_established = lambda host: asked.append(host) or next(counts[host])
    cluster.wait_for_mesh(timeout=30)
    assert asked == ["host1", "host2", "host3", "host3", "host3", "host1", "host2", "host3",
                     "host1", "host1", "host2", "host3"]


def test_unknown_hosts_and_commands_on_a_stopped_cluster_are_errors(untouched, runs):
    cluster = Cluster(topologies.load("two_host"))
    with pytest.raises(ClusterError, match="not running"):
        cluster.run("host1", "true")
    with cluster:
        with pytest.raises(ClusterError, match="unknown host 'host3' \\(this topology has host1, host2\\)"):
            cluster.run("host3", "true")


RESILIENCE = """
host1$ calicoctl node run
host2$ calicoctl node run
within 20s host1$ calicoctl node status | grep -q Established
# BIRD dies: calico-node starts it again and the session comes back.
host1$ kill -9 "$(cat /var/run/calico/bird.pid)"
within 30s host1$ calicoctl node status | grep -q Established
host1$ test "$(grep -c 'BIRD exited' /var/log/calico/node.log)" -ge 1
"""


def test_nodes_live_through_a_bird_crash_and_an_etcd_restart(untouched, runs):
    with Cluster(topologies.load("two_host")) as cluster:
        replay(cluster, RESILIENCE)
        cluster.restart_etcd()
        # The agents' watches died with etcd; a change made now must still reach both BIRDs.
        added = cluster.run("host1", "echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.77.0.0/16}}' | calicoctl create -f -")
        assert added.rc == 0, added.stdout + added.stderr
        for host in cluster.hosts:
            wait_until(lambda: "10.77.0.0/16" in (cluster.host(host).state_dir / "run" / "bird.cfg").read_text(), 30,
                       what=f"{host}'s BIRD config to follow etcd after its restart")
        assert all(cluster.bgp_established(host) == 1 for host in cluster.hosts)
        for host in cluster.hosts:  # the change came through a re-established watch, not a lucky one
            assert "etcd watch lost" in (cluster.host(host).state_dir / "log" / "node.log").read_text()


# (hypothesis tries rules with fewer arguments first: the simplest schedule adds workloads, then flaps links)
SIZES = {"ci": {"topology": ("two_host",), "examples": 4, "steps": 10},
         "scale": {"topology": ("flat", 3), "examples": 10, "steps": 30}}
SIZE = SIZES[os.environ.get("CALISIM_HYPOTHESIS_PROFILE", "ci")]
NETWORKS = ("net1", "net2")
HEAL_SECONDS = 60
MAX_WORKLOADS = 6

SETUP = """
within 30s host1$ calicoctl node status | grep -q Established
host1$ echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, spec: {ipip: {enabled: true}}}' | calicoctl create -f -
host1$ docker network create --driver calico --ipam-driver calico-ipam net1
host1$ docker network create --driver calico --ipam-driver calico-ipam net2
"""


@pytest.fixture(scope="module")
def cluster(module_runs):
    with Cluster(topologies.load(*SIZE["topology"])) as cluster:
        cluster.start_nodes()
        replay(cluster, SETUP)
        yield cluster


def must(result):
    assert result.rc == 0, f"{result.host}$ {result.command}: {result.stdout}{result.stderr}"
    return result


def recorded(step):
    """Add the step's seconds to the schedule's timings and note how it failed, if it did (both
    go to schedules.log: a failure hypothesis cannot replay is still on record there)."""
    @functools.wraps(step)
    def recorded_step(self, *args, **kwargs) -> None:
        started = time.monotonic()
        try:
            step(self, *args, **kwargs)
        except BaseException as error:
            self.note(f"FAILED {step.__name__}: {type(error).__name__}: {str(error)[:2000]}")
            raise
        finally:
            self.timings[step.__name__] = round(self.timings.get(step.__name__, 0) + time.monotonic() - started, 1)
    return recorded_step


class FaultSchedule(RuleBasedStateMachine):
    cluster: Cluster

    def __init__(self) -> None:
        super().__init__()
        self.workloads: dict[str, dict] = {}  # name -> host, network, running, ip, pid
        self.partitioned: str | None = None  # the partition this schedule put in force (what it cut off)
        self.counter = 0
        self.steps: list[str] = []  # what this schedule did, appended to schedules.log in the run directory
        self.began = time.monotonic()
        self.timings: dict[str, float] = {}  # seconds spent in each step and check

    @initialize()
    @recorded
    def clean(self) -> None:
        """Every example starts from a healthy cluster with no workloads (whatever the last one left)."""
        faults = self.cluster.faults
        if faults.partitions:
            faults.heal()
        for (host, daemon), state in list(faults.daemons.items()):
            faults.cont(host, daemon) if state == "stopped" else faults.start(host, daemon)
        for a, b in list(faults.down_links):
            faults.link(a, b, "up")
        for host in self.cluster.hosts:
            names = self.cluster.run(host, "docker ps -aq").stdout.split()
            if names:
                must(self.cluster.run(host, "docker rm -f " + " ".join(names)))
        self.cluster.wait_for_mesh(timeout=60)

    def running(self) -> dict[str, dict]:
        return {name: w for name, w in self.workloads.items() if w["running"]}

    # -- churn -------------------------------------------------------------------------------
    @precondition(lambda self: not self.partitioned and len(self.workloads) < MAX_WORKLOADS)
    @rule(host=st.integers(0, 9), network=st.sampled_from(NETWORKS))
    @recorded
    def run_workload(self, host: int, network: str) -> None:
        self._run(self.cluster.hosts[host % len(self.cluster.hosts)], network)

    @precondition(lambda self: not self.partitioned and len(self.workloads) < MAX_WORKLOADS - 1)
    @rule(host=st.integers(0, 9))
    @recorded
    def add_one_in_each_network(self, host: int) -> None:
        for network in NETWORKS:
            self._run(self.cluster.hosts[host % len(self.cluster.hosts)], network)

    def _run(self, host_name: str, network: str) -> None:
        self.counter += 1
        name = f"f{self.counter}"
        self.note(f"run {name} on {host_name} in {network}")
        must(self.cluster.run(host_name, f"docker run --net {network} --name {name} -tid busybox"))
        self.workloads[name] = {"host": host_name, "network": network}
        self._inspect(name)

    def _inspect(self, name: str) -> None:
        """The workload's PID and address as its dockerd reports them (started again: a new address)."""
        workload = self.workloads[name]
        details = inspect(self.cluster, workload["host"], name)
        workload.update(running=True, pid=details["State"]["Pid"],
                        ip=details["NetworkSettings"]["Networks"][workload["network"]]["IPAddress"])

    @precondition(lambda self: not self.partitioned and self.running())
    @rule(data=st.data())
    @recorded
    def stop_workload(self, data) -> None:
        name = data.draw(st.sampled_from(sorted(self.running())))
        self.note(f"stop {name}")
        must(self.cluster.run(self.workloads[name]["host"], f"docker stop -t 1 {name}"))
        self.workloads[name].update(running=False, pid=None, ip=None)

    @precondition(lambda self: not self.partitioned and len(self.running()) < len(self.workloads))
    @rule(data=st.data())
    @recorded
    def start_workload(self, data) -> None:
        name = data.draw(st.sampled_from(sorted(set(self.workloads) - set(self.running()))))
        self.note(f"start {name}")
        must(self.cluster.run(self.workloads[name]["host"], f"docker start {name}"))
        self._inspect(name)

    @precondition(lambda self: not self.partitioned and self.workloads)
    @rule(data=st.data())
    @recorded
    def remove_workload(self, data) -> None:
        name = data.draw(st.sampled_from(sorted(self.workloads)))
        self.note(f"rm {name}")
        must(self.cluster.run(self.workloads.pop(name)["host"], f"docker rm -f {name}"))

    # -- faults ------------------------------------------------------------------------------
    @rule(host=st.integers(0, 9), daemon=st.sampled_from(["bird", "calico-node"]), verb=st.sampled_from(["kill", "term"]))
    @recorded
    def signal_daemon(self, host: int, daemon: str, verb: str) -> None:
        name = self.cluster.hosts[host % len(self.cluster.hosts)]
        if self.partitioned and daemon == "calico-node":
            return  # a node cut off from etcd could not start again
        self.note(f"{verb} {name} {daemon}")
        # BIRD killed a step ago may still be in runit's 1 s pause: signalling it then is refused
        wait_until(lambda: self.cluster.faults._running_pid(name, daemon), 30, what=f"{daemon} in {name}")
        self.cluster.faults.signal(name, daemon, verb)

    @rule(host=st.integers(0, 9))
    @recorded
    def flap_link(self, host: int) -> None:
        name = self.cluster.hosts[host % len(self.cluster.hosts)]
        self.note(f"flap {name} s1")
        self.cluster.faults.link(name, "s1", "down")
        self.cluster.faults.link(name, "s1", "up")

    @precondition(lambda self: not self.partitioned)
    @rule(verb=st.sampled_from(["kill", "term"]))
    @recorded
    def restart_etcd(self, verb: str) -> None:
        etcd_host = self.cluster.topo.etcd_host
        self.note(f"{verb} and start etcd")
        self.cluster.faults.signal(etcd_host, "etcd", verb)
        self.cluster.faults.start(etcd_host, "etcd")

    @precondition(lambda self: not self.partitioned)
    @rule(host=st.integers(0, 9), what=st.sampled_from(["everything", "etcd", "peer"]))
    @recorded
    def partition(self, host: int, what: str) -> None:
        hosts = self.cluster.hosts
        name = hosts[host % len(hosts)]
        if what == "etcd" and name != self.cluster.topo.etcd_host:
            self.cluster.faults.partition(name, from_etcd=True)
        elif what == "peer":
            self.cluster.faults.partition(name, [h for h in hosts if h != name][:1])
        else:
            self.cluster.faults.partition(name)
        self.partitioned = f"{name} from {self.cluster.faults.active()[0]['from']}"
        self.note(f"partition {self.partitioned}")

    @precondition(lambda self: self.partitioned)
    @rule()
    @recorded
    def heal(self) -> None:
        self.note("heal")
        self.cluster.faults.heal()
        self.partitioned = None

    # -- what must always hold ---------------------------------------------------------------
    @invariant()
    @recorded
    def no_address_twice(self) -> None:
        assigned = ipam_workload_addresses(self.cluster)
        assert len(assigned) == len(set(assigned)), assigned
        running = [w["ip"] for w in self.running().values()]
        assert len(running) == len(set(running)), self.workloads

    @invariant()
    @recorded
    def ipam_equals_the_running_workloads(self) -> None:
        assert ipam_workload_addresses(self.cluster) == sorted(w["ip"] for w in self.running().values())

    @invariant()
    @recorded
    def only_the_schedules_faults_are_in_force(self) -> None:
        active = self.cluster.faults.active()
        assert [f["fault"] for f in active] == (["partition"] if self.partitioned else []), active

    @invariant()
    @recorded
    def networks_stay_isolated(self) -> None:
        running = self.running()
        pairs = [(s, d) for s in running for d in running if running[s]["network"] != running[d]["network"]]
        answered = self._probe(pairs)
        assert not [pair for pair, ok in answered.items() if ok], f"isolation broken: {answered} {self.cluster.faults.active()}"

    @invariant()
    @recorded
    def healed_pairs_reach_each_other(self) -> None:
        if self.partitioned:
            return
        running = self.running()
        pairs = [(s, d) for s in running for d in running if s != d and running[s]["network"] == running[d]["network"]]
        deadline, missing = time.monotonic() + HEAL_SECONDS, pairs
        while missing and time.monotonic() < deadline:
            missing = [pair for pair, ok in self._probe(missing).items() if not ok]
        assert not missing, f"not reachable {HEAL_SECONDS}s after healing: {missing}; see {self._keep_diagnostics()}"

    def _keep_diagnostics(self) -> Path:
        """diagnose() and BIRD's graceful-restart view of every session, kept under a name of their own."""
        path = self.cluster.diagnose()
        detail = [f"### {host}$ {command}\n{self.cluster.run(host, command, timeout=10).stdout}"
                  for host in self.cluster.hosts for command in
                  ("birdc -s /var/run/calico/bird.ctl show protocols all", "ip -4 route", "tail -n 30 /var/log/calico/bird.log")]
        kept = path.with_name(f"diagnostics-{time.time():.0f}.txt")
        kept.write_text(path.read_text() + "\n" + "\n".join(detail))
        return kept

    def _probe(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
        """One echo per pair (iputils ping in the source's network namespace: lighter than a
        Python probe process, which matters with a dozen pairs after every step)."""
        def answered(pair: tuple[str, str]) -> bool:
            source, destination = (self.workloads[name] for name in pair)
            done = subprocess.run(["nsenter", "-t", str(source["pid"]), "-n", "--", "ping", "-n", "-q", "-c", "1",
                                   "-W", "1", destination["ip"]], capture_output=True)
            return done.returncode == 0

        with ThreadPoolExecutor(max_workers=16) as pool:
            return dict(zip(pairs, pool.map(answered, pairs)))

    def note(self, step: str) -> None:
        self.steps.append(f"{step} (at {time.monotonic() - self.began:.0f}s)")

    def teardown(self) -> None:
        if self.steps:
            with open(self.cluster.run_dir.path / "schedules.log", "a") as log:
                log.write("; ".join(self.steps) + "\n" + repr(self.timings) + "\n")
        if self.cluster.faults.partitions:
            self.cluster.faults.heal()


def test_fault_schedules_keep_addresses_isolation_and_reachability(cluster):
    FaultSchedule.cluster = cluster
    try:
        run_state_machine_as_test(FaultSchedule, settings=settings(settings(),
            max_examples=SIZE["examples"], stateful_step_count=SIZE["steps"], deadline=None,
            phases=[Phase.explicit, Phase.reuse, Phase.generate]))
    except Flaky as flaky:
        # A live cluster does not fail twice the same way: hypothesis's replay of a failed schedule
        # then reports only that the replay differed.  The failure itself is in schedules.log.
        log = cluster.run_dir.path / "schedules.log"
        failed = [line for line in log.read_text().splitlines() if "FAILED" in line] if log.exists() else []
        raise AssertionError("a fault schedule failed (hypothesis could not replay it the same way):\n"
                             + "\n".join(failed)) from flaky
