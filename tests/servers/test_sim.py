"""Simulated servers: each a machine of its own (hostname, processes, /tmp, /run, /sys, run
directory, sshd reached with the run's key), on one underlay at MTU 1500, and nothing left
on any of them once stopped."""

import os
import signal
import socket
import time
from ipaddress import IPv4Interface
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from calisim.process import pids
from calisim.servers import sim as sim_module
from calisim.servers.sim import UNDERLAY_BRIDGE, UNDERLAY_MTU, ServerError, SimServer, SimServers, check_count

pytestmark = pytest.mark.emulation
MARKER = "sleep 3917"  # a process started on the second server only


def run(sim, server, command):
    result = sim.ssh(server, command)
    assert result.returncode == 0, f"{server.name}: {command}: {result.stderr}"
    return result.stdout.strip()


def test_each_server_answers_ssh_as_itself(sim):
    for server in sim.servers:
        assert run(sim, server, "hostname") == server.name
        assert run(sim, server, "tr '\\0' ' ' < /proc/1/cmdline").split()[2:4] == ["calisim.servers.init", server.name]


def test_each_server_sees_only_its_own_processes(sim):
    first, second = sim.servers
    run(sim, second, f"setsid {MARKER} </dev/null >/dev/null 2>&1 &")
    assert run(sim, second, f"pgrep -fx '{MARKER}'")
    assert sim.ssh(first, f"pgrep -fx '{MARKER}'").returncode == 1
    assert set(first.processes()).isdisjoint(second.processes())


def test_private_tmp_run_and_run_directory(sim):
    first, second = sim.servers
    run(sim, first, "touch /tmp/only-here /run/only-here")
    for path in ("/tmp/only-here", "/run/only-here"):
        assert run(sim, second, f"test -e {path} && echo yes || echo no") == "no"
    assert not (sim.run_dir / "only-here").exists()
    listing = run(sim, first, f"ls {sim.run_dir}").split()
    assert "sshd.log" in listing and "servers" not in listing  # its own directory at the run's path


def test_a_servers_root_shell_reads_none_of_the_machines_startup(sim):
    """bash reads root's .bashrc for every command sshd runs: a server's is its own (empty), the
    machine's is as it was."""
    machines = Path.home() / ".bashrc"
    before = machines.read_bytes() if machines.exists() else None
    for server in sim.servers:
        assert run(sim, server, "wc -c < ~/.bashrc 2>/dev/null || echo none") in ("0", "none")
    assert (machines.read_bytes() if machines.exists() else None) == before


def test_underlay_carries_full_size_frames_with_df_and_no_more(sim):
    first, second = sim.servers
    assert run(sim, first, "cat /sys/class/net/eth0/mtu") == str(UNDERLAY_MTU)
    full = sim.ssh(first, f"ping -c1 -W2 -M do -s {UNDERLAY_MTU - 28} {second.address.ip}")
    assert full.returncode == 0, full.stdout + full.stderr
    too_big = sim.ssh(first, f"ping -c1 -W2 -M do -s {UNDERLAY_MTU - 27} {second.address.ip}")
    assert too_big.returncode != 0 and "message too long" in (too_big.stdout + too_big.stderr).lower()


def test_a_server_whose_sshd_or_pid1_died_is_named(sim):
    first, second = sim.servers
    assert sim.failures() == []
    sshd = [pid for pid in pids.children(first.init_pid) if b"[listener]" in _cmdline(pid)]
    assert len(sshd) == 1, "one listening sshd, a child of the server's PID 1"
    os.kill(sshd[0], signal.SIGKILL)
    os.kill(second.init_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while len(sim.failures()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.failures() == [
        f"server1: sshd does not answer on {first.address.ip}:22 (Connection refused)",
        f"server2: the server is gone (its PID 1, {second.init_pid} here, exited)"]
    assert second.processes() == []  # the kernel ended everything on it


def test_stop_leaves_nothing_on_any_server(sim):
    """Last in this module: it stops the module's servers (the marker process and a server without sshd included)."""
    namespaces = {server.name: server.pid_namespace for server in sim.servers}
    assert sim.servers[0].processes(), "server1 runs its PID 1 at least"
    assert sim.stop() == []
    for name, inode in namespaces.items():
        assert pids.in_namespace(inode, "pid") == [], f"{name} still runs processes"
    assert not [pid for pid in Path("/proc").iterdir() if pid.name.isdigit()
                and str(sim.directory).encode() in _cmdline(int(pid.name))], "a multiplexing ssh is left"
    with IPRoute() as ipr:
        assert ipr.link_lookup(ifname=UNDERLAY_BRIDGE) == []
        assert all(ipr.link_lookup(ifname=server.veth) == [] for server in sim.servers)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.parametrize("count", [0, 100])
def test_count_out_of_range_is_refused(count):
    with pytest.raises(ServerError, match=f"sim:{count}: the number of simulated servers must be between 1 and 99"):
        check_count(count)


def test_a_server_whose_sshd_never_finishes_the_handshake_is_one_line(tmp_path, monkeypatch):
    """A listener that accepts and never speaks: the run's first ssh to it gives up at the
    handshake's deadline with one line naming the server, its ssh client not left behind."""
    monkeypatch.setattr(sim_module, "HANDSHAKE_TIMEOUT", 1.0)
    servers = SimServers(tmp_path, 1, control_directory=Path("/run"))  # never used: no connection gets that far
    servers.servers = [SimServer("server1", IPv4Interface("127.0.0.1/8"), tmp_path / "server1")]
    with socket.create_server(("127.0.0.1", 22)):
        began = time.monotonic()
        with pytest.raises(ServerError, match=r"^server1: ssh as root with the run's key did not finish within 1s$"):
            servers._wait_reachable()
    assert time.monotonic() - began < 10
    assert not [pid for pid in pids.children(os.getpid()) if b"ssh" in _cmdline(pid)]
