"""Each host's copy-on-write /etc and /var/lib: a host's writes stay in its own view and its run
directory, never in the machine's files or another host's view; every host names itself; a run
whose hosts cannot get their views stops before any daemon starts.  One routed cluster (two
Calico hosts, a router, an outside machine; no dockerd) is shared by the module."""

import os
import subprocess
from pathlib import Path

import pytest

import topologies
from calisim.emulation import Cluster, wait_until
from calisim.emulation.overlay import OverlayError, check_outside_views, etc_hosts
from calisim.node import NodePaths

from tests.conftest import PYTHON, running_daemons

WRITE = ("mkdir -p /etc/calisim-test/nested && echo {name} > /etc/calisim-test/nested/by-{name} && "
         "echo {name} > /etc/calisim-test-by-{name} && echo {name} > /var/lib/calisim-test-by-{name}")
WRITTEN = ("etc/calisim-test/nested/by-{name}", "etc/calisim-test-by-{name}", "var/lib/calisim-test-by-{name}")
WRITERS = ("host1", "r1")


@pytest.fixture(scope="module")
def cluster(module_runs):
    with Cluster(topologies.load("routed"), docker=False) as cluster:
        for name in WRITERS:
            written = cluster.run(name, WRITE.format(name=name))
            assert written.rc == 0, written
        yield cluster


def upper(cluster, host: str, path: str) -> Path:
    """Where path, written by host, lands: its view's upper directory in the run directory."""
    top, rest = ("etc", path[len("etc/"):]) if path.startswith("etc/") else ("var-lib", path[len("var/lib/"):])
    return cluster.host(host).state_dir / "overlay" / top / "upper" / rest


@pytest.mark.emulation
@pytest.mark.parametrize("writer", WRITERS)
def test_a_hosts_writes_land_in_its_view_and_run_directory_only(cluster, writer):
    for path in (p.format(name=writer) for p in WRITTEN):
        assert cluster.run(writer, f"cat /{path}").stdout == f"{writer}\n"
        assert upper(cluster, writer, path).read_text() == f"{writer}\n"
        assert not Path("/", path).exists(), f"/{path} reached the machine"
        for other in cluster.topo.hosts(sort=True):
            if other != writer:
                assert cluster.run(other, f"test -e /{path}").rc == 1, f"{other} sees /{path} written by {writer}"


@pytest.mark.emulation
def test_every_host_names_itself_in_hostname_etc_hostname_and_etc_hosts(cluster):
    for name in cluster.topo.hosts(sort=True):  # Calico hosts, the router, the outside machine
        done = cluster.run(name, "hostname; cat /etc/hostname; cat /etc/hosts")
        assert done.stdout == f"{name}\n{name}\n{etc_hosts(name)}", done
        assert "127.0.1.1\t" + name + "\n" in done.stdout
        daemon = cluster.host(name).popen(["sh", "-c", "hostname; cat /etc/hostname"], text=True)
        assert daemon.communicate(timeout=10)[0] == f"{name}\n{name}\n"  # as etcd, BIRD and dockerd start


@pytest.mark.emulation
def test_calico_node_forked_by_the_zygote_lives_in_its_hosts_view(cluster):
    started = cluster.run("host1", "calicoctl node run")
    assert started.rc == 0, started
    host = cluster.host("host1")
    paths = NodePaths(host.state_dir / "run", host.state_dir / "log")
    pid = wait_until(paths.running_pid, 30, what="calico-node in host1")
    assert os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat(f"/proc/{host.pid}/ns/mnt").st_ino
    assert Path(f"/proc/{pid}/root/etc/calisim-test-by-host1").read_text() == "host1\n"
    assert Path(f"/proc/{pid}/root/etc/hostname").read_text() == "host1\n"


def test_a_run_directory_inside_a_viewed_directory_is_refused():
    for inside in ("/etc/calisim-runs", "/var/lib/calisim"):
        with pytest.raises(OverlayError, match=f"the run directory {inside} is inside"):
            check_outside_views(Path(inside))
    check_outside_views(Path("/var/tmp/calisim"))


@pytest.mark.emulation
def test_an_upper_directory_overlayfs_refuses_stops_the_run_before_any_daemon(runs):
    """Run directories on an overlay (which overlayfs refuses as an upper layer), mounted in the
    session's private mount namespace: the run says why in one line, and nothing started."""
    tmp_path = runs.parent  # short: the runs' socket paths must fit
    for sub in ("lower", "upper", "work", "refusing"):
        (tmp_path / sub).mkdir()
    options = f"lowerdir={tmp_path / 'lower'},upperdir={tmp_path / 'upper'},workdir={tmp_path / 'work'}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(tmp_path / "refusing")], check=True)
    try:
        daemons = running_daemons()
        done = subprocess.run([PYTHON, "-m", "calisim", "two-host"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "CALISIM_RUNS": str(tmp_path / "refusing" / "runs")})
        assert running_daemons() == daemons
        made = [sorted(p.name for p in run.iterdir()) for run in (tmp_path / "refusing" / "runs").glob("*-two_host-*")]
    finally:
        subprocess.run(["umount", str(tmp_path / "refusing")], check=True)
    assert done.returncode != 0
    *announced, why = done.stderr.splitlines()  # the run directory's line, then why it stopped
    assert len(announced) == 1 and why.startswith("calisim: overlayfs refuses ") and " (overlay) " in why, done.stderr
    assert len(made) == 1 and not {"bin", "etcd", "zygote.log"} & set(made[0]), made  # nothing was started


@pytest.mark.emulation
def test_a_segments_bridge_cannot_write_the_machines_etc_or_var_lib(cluster):
    """Nothing runs in a bridge's namespace, but Mininet's CLI can run commands there."""
    for directory in ("/etc", "/var/lib"):
        output = cluster.net["s1"].cmd(f"touch {directory}/calisim-test-by-s1 2>&1; echo status $?")
        assert "Read-only file system" in output and output.strip().endswith("status 1"), output
        assert not Path(directory, "calisim-test-by-s1").exists()
