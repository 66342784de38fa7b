"""The route reflector as a fault daemon (`routereflector`) on `flat --hosts 2 --route-reflectors 1`:
the nodes peer only with rr1, so every route between them passes through its BIRD.  Killed or
terminated, that BIRD comes back by itself (runit in calico/routereflector, our reflector process
here), the nodes' sessions are Established again and the workloads talk; under graceful restart a
SIGKILL costs a stream (almost) nothing; a reflector that is gone altogether comes back with
`start`.  One cluster for the module.  Without root: the `calicoctl node run` that starts a killed
calico-node again, read from its argv."""

import time

import pytest

import topologies
from calisim.emulation import wait_until
from calisim.cli.fault import run_command
from calisim.emulation.faults import FaultError
from calisim.emulation.faults.daemons import node_run_command
from calisim.probes import StreamProbe, probe_from
from calisim.scenarios.seed import inspect

from tests.conftest import replay
from tests.emulation.conftest import live_world

SETUP = """
host1$ docker network create --driver calico --ipam-driver calico-ipam net1
host1$ docker run --net net1 --name w1 -tid busybox
host2$ docker run --net net1 --name w2 -tid busybox
"""


class World:
    def __init__(self, cluster):
        self.cluster, self.faults = cluster, cluster.faults
        self.w1 = inspect(cluster, "host1", "w1")["State"]["Pid"]
        self.w2_ip = next(iter(inspect(cluster, "host2", "w2")["NetworkSettings"]["Networks"].values()))["IPAddress"]

    def reachable(self, timeout: float = 60) -> None:
        """Both nodes' session to rr1 Established, and w1 reaching w2 through the reflected routes."""
        for host in ("host1", "host2"):
            wait_until(lambda: self.cluster.bgp_established(host) == 1, timeout, interval=0.5,
                       what=f"{host}'s session to the reflector")  # its only one: the mesh is off
        wait_until(lambda: probe_from(self.w1, "icmp", self.w2_ip, count=1).reachable, timeout,
                   interval=0.5, what=f"w1 reaching w2 ({self.w2_ip})")

    def reflector_bird(self) -> int | None:
        return self.faults._running_pid("rr1", "routereflector")


def started(cluster) -> None:
    cluster.start_nodes()  # and the reflector, the mesh off, rr1 every node's global peer
    assert cluster.expected_sessions() == dict.fromkeys(cluster.hosts, 1)
    cluster.wait_for_mesh(timeout=60)  # what `up flat --route-reflectors 1 --start-nodes` waits for
    replay(cluster, SETUP)


def test_calico_node_is_run_again_with_the_options_it_was_started_with():
    """Both versions' addresses (an IPv6 one with its autodetection method, quoted for the shell),
    AS, backend and default pools, and the calico/node settings of its environment; the status
    pipe is the new run's own."""
    argv = ["/x/python", "-m", "calisim.node", "--name", "host2", "--backend", "bird", "--ip", "192.168.3.228/24",
            "--ip6", "autodetect", "--ip6-autodetection-method", "interface=eth.*", "--as", "64513",
            "--no-default-ippools", "--status-fd", "5", ""]
    assert node_run_command(argv) == ("calicoctl node run --name host2 --backend bird --ip 192.168.3.228/24 "
                                      "--ip6 autodetect --ip6-autodetection-method 'interface=eth.*' --as 64513 "
                                      "--no-default-ippools")
    assert node_run_command(["python", "-m", "calisim.node", "--name", "h", "--ip6", "fd00:3::228"]) == \
        "calicoctl node run --name h --ip6 fd00:3::228"
    settings = {"IP6_AUTODETECTION_METHOD": "can-reach=fd00:3::1", "FELIX_IPV6SUPPORT": "false"}
    assert node_run_command(["python", "-m", "calisim.node", "--name", "h"], settings) == \
        "FELIX_IPV6SUPPORT=false IP6_AUTODETECTION_METHOD=can-reach=fd00:3::1 calicoctl node run --name h"


@pytest.fixture(scope="module")
def world(module_runs):
    yield from live_world(topologies.load("flat", 2, route_reflectors=1), started, World)


@pytest.mark.emulation
def test_reflector_daemon_names_are_checked(healthy):
    faults = healthy.faults
    refusals = {
        lambda: faults.kill("host1", "routereflector"): "routereflector does not run in host1 (the route reflectors are rr1)",
        lambda: faults.kill("rr1", "bird"): "rr1 is a route reflector, not a Calico host: its BIRD is the daemon routereflector",
        lambda: faults.start("rr1", "routereflector"): "routereflector is already running in rr1",
    }
    for call, message in refusals.items():
        with pytest.raises(FaultError) as refused:
            call()
        assert str(refused.value) == message


@pytest.mark.emulation
def test_reflector_bird_killed_or_terminated_comes_back(healthy):
    """Calico's test_node_status_resilience, for the reflector: a new PID, sessions back, traffic."""
    for argv in (["kill", "rr1", "routereflector"], ["term", "rr1", "routereflector"]):
        old = healthy.reflector_bird()
        assert run_command(healthy.faults, argv) == f"fault {' '.join(argv)}: done"  # the command face
        wait_until(lambda: healthy.reflector_bird() not in (None, old), 30, what="a new BIRD in rr1")
        healthy.reachable()
    assert [line.split(" ")[1:4] for line in healthy.faults.log_path.read_text().splitlines()[-2:]] == [
        ["kill", "rr1", "routereflector"], ["term", "rr1", "routereflector"]]


@pytest.mark.emulation
def test_graceful_restart_keeps_a_stream_through_a_reflector_kill(healthy):
    """No Cease from a SIGKILLed reflector: both nodes keep its routes stale while it restarts."""
    probe = StreamProbe(healthy.w1, healthy.w2_ip, interval_ms=20, seconds=6)
    time.sleep(1.5)  # the stream is under way: now the fault, mid-stream
    old = healthy.reflector_bird()
    healthy.faults.kill("rr1", "routereflector")
    wait_until(lambda: healthy.reflector_bird() not in (None, old), 30, what="a new BIRD in rr1")
    result = probe.result()
    assert result.received >= result.sent - 10 and result.longest_outage_ms < 500, result


@pytest.mark.emulation
def test_reflector_stopped_and_continued_then_gone_and_started(healthy):
    faults, cluster = healthy.faults, healthy.cluster
    pid = healthy.reflector_bird()
    faults.stop("rr1", "routereflector")
    assert faults.active() == [{"fault": "daemon-stopped", "host": "rr1", "daemon": "routereflector"}]
    assert open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "T"
    faults.cont("rr1", "routereflector")
    assert healthy.reflector_bird() == pid
    # The whole reflector gone (its process and, with it, its BIRD): `start` runs it again.
    assert cluster.run("rr1", "kill $(cat /var/run/calico/routereflector.pid)").rc == 0
    wait_until(lambda: healthy.reflector_bird() is None, 30, what="the reflector's BIRD gone")
    faults.start("rr1", "routereflector")
    assert healthy.reflector_bird() not in (None, pid)
    assert "start rr1 routereflector" in faults.log_path.read_text()
