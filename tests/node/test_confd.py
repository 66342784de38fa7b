"""confd: node changes re-render BIRD everywhere (Calico's test_as_num,
test_update_ip_address): `calicoctl apply` of a node with a new AS or IPv4 address and `calicoctl
node run` again with a new --ip bring every session back at the new values, and workloads with them.

And confd keeps BIRD running as runsv does: a BIRD that dies while it is being started again (a
second fault within the first one's restart) is started again too, not given up on.  Found by the
fault schedules' scale profile: the supervisor loop ended, the node stayed without BIRD, and its
peers' graceful-restart recovery waited for it (no root needed: BIRD is stood in for)."""

import asyncio
import ipaddress

import pytest

import topologies
from calisim.datastore import DEBOUNCE, View, keys
from calisim.emulation import Cluster
from calisim.node import confd as confd_module
from calisim.node.confd import Confd
from calisim.node.paths import NodePaths
from calisim.process.daemon import DaemonError

from tests.conftest import replay


CHANGES = r"""
host1$ calicoctl config set asNumber 4294.566
host1$ calicoctl config get asNumber | grep -x 281412150
host1$ calicoctl node run
host2$ calicoctl node run --as 4294.566
host3$ calicoctl node run
within 60s host1$ calicoctl node status | grep -c 'node-to-node mesh | up .*Established' | grep -x 2
host1$ calicoctl get node -o wide | grep -E '^host1 +\(281412150\) '
host1$ calicoctl get node -o wide | grep -E '^host2 +281412150 '
host1$ docker network create --driver calico --ipam-driver calico-ipam net1
host1$ docker run --net net1 --name w1 -tid busybox
host2$ docker run --net net1 --name w2 -tid busybox
within 30s host1$ docker exec w1 ping -c 1 -W 1 w2

# A new AS for host2 by `apply`: every node re-renders; the sessions come back with it.
host1$ calicoctl apply -f - <<EOF
- apiVersion: v1
  kind: node
  metadata: {name: host2}
  spec: {bgp: {asNumber: "1.1", ipv4Address: 172.16.0.2/16}}
EOF
host1$ calicoctl get node -o wide | grep -E '^host2 +65537 '
within 60s host1$ birdc -s /var/run/calico/bird.ctl show protocols all Mesh_172_16_0_2 | grep -E 'Neighbor AS: +65537'
within 60s host3$ calicoctl node status | grep -E '^\| 172\.16\.0\.2 +\| node-to-node mesh \| up .*Established'
within 60s host2$ calicoctl node status | grep -c 'node-to-node mesh | up .*Established' | grep -x 2
within 30s host1$ docker exec w1 ping -c 1 -W 1 w2

# `node run` again with a new --ip: host2 moves to 172.16.0.102 (keeping its AS), the others follow.
host2$ ip addr add 172.16.0.102/16 dev host2-eth0
host2$ calicoctl node run --ip 172.16.0.102/16 | grep -F "Calico node 'host2' IPv4 address has changed: 172.16.0.2 -> 172.16.0.102"
within 60s host1$ calicoctl node status | grep -E '^\| 172\.16\.0\.102 +\| node-to-node mesh \| up .*Established'
within 60s host3$ calicoctl node status | grep -E '^\| 172\.16\.0\.102 +\| node-to-node mesh \| up .*Established'
host1! calicoctl node status | grep -F '| 172.16.0.2 '
host1$ calicoctl get node -o wide | grep -E '^host2 +65537 +172\.16\.0\.102/16 '
host2$ grep -x 'router id 172.16.0.102;' /var/run/calico/bird.cfg
within 30s host1$ docker exec w1 ping -c 1 -W 1 w2

# And back by `apply` of a new ipv4Address: host2's own BIRD (router id, source address) follows too.
host1$ calicoctl apply -f - <<EOF
- apiVersion: v1
  kind: node
  metadata: {name: host2}
  spec: {bgp: {asNumber: 65537, ipv4Address: 172.16.0.2/16}}
EOF
within 60s host2$ grep -x 'router id 172.16.0.2;' /var/run/calico/bird.cfg
within 60s host1$ calicoctl node status | grep -E '^\| 172\.16\.0\.2 +\| node-to-node mesh \| up .*Established'
within 60s host2$ calicoctl node status | grep -c 'node-to-node mesh | up .*Established' | grep -x 2
within 30s host1$ docker exec w1 ping -c 1 -W 1 w2
"""


@pytest.mark.emulation
def test_as_and_address_changes_bring_the_sessions_back(untouched, runs):
    with Cluster(topologies.load("flat", 3)) as cluster:
        results = replay(cluster, CHANGES)
    assert all(r.passed for r in results)


def test_a_bird_dying_while_it_starts_is_started_again(tmp_path):
    confd = Confd(None, NodePaths(tmp_path / "run", tmp_path / "log"), [], lambda entries: "")
    starts = []

    async def start_bird(recovery: bool = False) -> None:
        starts.append(recovery)
        if len(starts) == 1:  # killed before its control socket answered
            confd.bird = await asyncio.create_subprocess_exec("true")
            await confd.bird.wait()
            raise DaemonError("BIRD exited with code -9; see bird.log")
        confd.bird = await asyncio.create_subprocess_exec("sleep", "30")

    async def scenario() -> None:
        confd.start_bird = start_bird
        confd.bird = await asyncio.create_subprocess_exec("true")  # the BIRD a fault just killed
        supervisor = asyncio.create_task(confd.keep_bird_running())
        try:
            for _ in range(100):
                if len(starts) == 2 or supervisor.done():
                    break
                await asyncio.sleep(0.1)
            assert not supervisor.done(), supervisor.exception()
        finally:
            supervisor.cancel()
            if confd.bird.returncode is None:
                confd.bird.kill()
                await confd.bird.wait()

    asyncio.run(scenario())
    assert starts == [True, True]  # both with -R: graceful-restart recovery, as Calico's run script


def test_a_change_soon_after_a_pass_waits_longer_for_quiet(tmp_path):
    """While hosts keep joining, each node's change following confd's last pass within STORM_GAP
    waits for STORM_QUIET of silence; a lone change (the first, or one long after a pass) and any
    other key's change (a pool) for LONE_QUIET, shorter than the agents' DEBOUNCE."""
    view = View(["/calico/"])
    confd = Confd(view, NodePaths(tmp_path / "run", tmp_path / "log"), lambda entries: "")

    async def quiets(changed: str) -> list[float]:
        view._update(changed, {"value": 1})
        now = asyncio.get_running_loop().time()
        found = [confd.quiet()]  # no pass yet
        for last_pass in (now, now - confd_module.STORM_GAP / 2, now - confd_module.STORM_GAP - 1):
            confd.last_pass = last_pass
            found.append(confd.quiet())
        confd.last_pass = float("-inf")
        return found

    assert asyncio.run(quiets(keys.bgp_host_ip_v4("host9"))) == [
        confd_module.LONE_QUIET, confd_module.STORM_QUIET, confd_module.STORM_QUIET, confd_module.LONE_QUIET]
    assert asyncio.run(quiets(keys.pool(ipaddress.ip_network("10.10.0.0/16")))) == [confd_module.LONE_QUIET] * 4
    assert confd_module.STORM_QUIET > DEBOUNCE > confd_module.LONE_QUIET


class RecordedControl:
    """BIRD's control socket, standing in: the commands confd sends."""

    def __init__(self):
        self.commands: list[str] = []

    def command(self, text: str) -> list[tuple[str, str]]:
        self.commands.append(text)
        return [("0015", "kernel1: reloading")]


def test_birds_kernel_routes_are_exported_again_once_the_tunnel_comes(tmp_path):
    """A route BIRD exported while tunl0 was not yet up was dropped by calico_kernel's `gw`
    ("Invalid gw address") and is not exported again when tunl0 comes up: confd has BIRD export
    its kernel routes again after the pass whose tunnel step made tunl0 (or changed its address),
    once, and not while there is no tunnel."""
    tunnels = iter([None, None, "10.10.0.1", "10.10.0.1", "10.10.0.2"])
    asked: list[object] = []

    async def program_tunnel() -> object:
        asked.append(next(tunnels))
        return asked[-1]

    async def unchanged() -> bool:
        return False

    async def passes() -> list[list[str]]:
        confd = Confd(View([]), NodePaths(tmp_path / "run", tmp_path / "log"), lambda entries: "", program_tunnel)
        confd.control = RecordedControl()
        confd.render_config = unchanged
        reconcile = asyncio.create_task(confd.reconcile())
        seen = []
        try:
            for count in range(1, 6):
                confd.view.changed.set()
                for _ in range(200):
                    if len(asked) == count or reconcile.done():
                        break
                    await asyncio.sleep(0.05)
                assert len(asked) == count, reconcile
                seen.append(list(confd.control.commands))
        finally:
            reconcile.cancel()
        return seen

    reload = "reload out kernel1"
    assert asyncio.run(passes()) == [[], [], [reload], [reload], [reload, reload]]
