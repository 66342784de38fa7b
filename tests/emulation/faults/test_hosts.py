"""A host crash on a two-host cluster whose BGP hold time is short (HOLD_TIME, set for the
emulation: Calico's templates set none, so BIRD holds a silent peer's routes for 240 s): the
crashed host's peer hears nothing, ends the session only when its hold timer runs out and then
withdraws the crashed host's block from its kernel; after boot, `calicoctl node run` and the
workloads re-created, no address is handed out twice."""

import time

import pytest

import topologies
from calisim.emulation import wait_until
from calisim.process.pids import alive as process_alive
from calisim.node.bird import Timers
from calisim.scenarios.seed import inspect

from tests.conftest import replay
from tests.emulation.conftest import SETUP, address, ipam_workload_addresses, live_world, running_workload_addresses

pytestmark = pytest.mark.emulation
HOLD_TIME = 9  # seconds; BIRD sends keepalives every third of it (3 s)


@pytest.fixture(scope="module")
def world(module_runs):
    yield from live_world(topologies.load("two_host"), lambda cluster: replay(cluster, SETUP),
                          bgp_timers=Timers(hold=HOLD_TIME))


def routes_via(cluster, host: str, peer: str) -> list[str]:
    """The routes BIRD put in host's kernel toward peer (on two_host: host1's way to host2's block)."""
    via = f" via {cluster.topo.host_ip(peer)} "
    return [r for r in cluster.run(host, "ip -4 route show proto bird").stdout.splitlines() if via in f"{r} "]


def test_the_hold_time_is_in_every_node_config(world):
    for host in world.cluster.hosts:
        config = (world.cluster.host(host).state_dir / "run" / "bird.cfg").read_text()
        assert f"  hold time {HOLD_TIME};\n" in config


def test_crash_is_noticed_after_the_hold_time_and_no_address_is_handed_out_twice(world):
    faults, cluster = world.faults, world.cluster
    pids = {daemon: faults._running_pid("host2", daemon) for daemon in ("bird", "calico-node", "dockerd")}
    w2 = inspect(cluster, "host2", "w2")["State"]["Pid"]
    before = ipam_workload_addresses(cluster)
    routes = routes_via(cluster, "host1", "host2")
    # the block's route, not a workload's: the destination is never w2 itself (w2 may hold the block's first address)
    assert routes and all(route.split()[0] != world.w2_ip for route in routes)
    faults.crash("host2")
    crashed = time.monotonic()
    assert faults.active() == [{"fault": "crashed", "host": "host2"}]
    still = {name: pid for name, pid in [*pids.items(), ("w2", w2)] if process_alive(pid)}  # zombies count as gone
    assert not still, still
    assert world.stream(seconds=1).received == 0
    # Silence, not a Cease: host1 keeps the session and the routes until its hold timer runs out ...
    assert cluster.bgp_established("host1") == 1 and routes_via(cluster, "host1", "host2") == routes
    wait_until(lambda: cluster.bgp_established("host1") == 0, HOLD_TIME * 4, interval=0.2,
               what="host1's session to the silent host2 ending")
    noticed = time.monotonic() - crashed
    assert noticed >= HOLD_TIME - HOLD_TIME / 3 - 1, noticed  # no sooner than a hold time after the last keepalive
    assert "Hold timer expired" in (cluster.host("host1").state_dir / "log" / "bird.log").read_text()
    # ... then withdraws host2's block from its kernel (a hold timeout is no graceful restart).
    wait_until(lambda: routes_via(cluster, "host1", "host2") == [], 30, interval=0.2, what="host2's block gone from host1")

    faults.boot("host2")
    run = cluster.host("host2").state_dir / "run"
    assert list(run.iterdir()) == [] and "cali" not in cluster.run("host2", "ip -o link").stdout
    assert cluster.run("host2", "docker ps -q").stdout == ""
    # dockerd still has them, exited with their shims' unknown status, as after a real reboot
    exited = cluster.run("host2", "docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' w2 echo2").stdout
    assert exited.split("\n")[:2] == ["exited 255", "exited 255"], exited
    assert cluster.run("host2", "docker rm w2 echo2").rc == 0
    started = cluster.run("host2", "calicoctl node run --name 192.168.3.228")
    assert started.rc == 0, started
    # tunl0 made before BIRD starts (BIRD's kernel routes of the IPIP pool name it; one exported
    # before tunl0 was up was dropped for good, and w1 never reached w2 again)
    assert "Assigned IPIP tunnel address 10.10." in started.stdout, started.stdout
    cluster.wait_for_mesh(timeout=120)
    for name, image in (("w2", "busybox -tid"), ("echo2", "workload -d")):
        assert cluster.run("host2", f"docker run --net net1 --name {name} {image.split()[1]} {image.split()[0]}").rc == 0
    world.w2_ip = address(cluster, "host2", "w2")
    world.reachable()
    recreated = {world.w2_ip, address(cluster, "host2", "echo2")}
    assert recreated.isdisjoint(before)  # fresh addresses: the crashed ones' are still held, as in Calico
    assigned = ipam_workload_addresses(cluster)  # (until `calicoctl ipam release`)
    assert len(set(assigned)) == len(assigned)  # nothing twice ...
    assert sorted(assigned) == sorted(set(running_workload_addresses(cluster)) | set(before))  # ... nothing else
