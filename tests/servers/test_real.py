"""Real servers: the user's ssh and the underlay made from the machine's own namespace, each server's
peers, and, end to end, a run on two "real" machines emulated honestly: two simulated servers of
this test are the machines on a LAN, and calisim runs as the controller on the first of them
exactly as a user with two machines runs it (its own root ~/.ssh, `--servers A,B`)."""

import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from calisim.emulation.rundir import RunDir
from calisim.scenarios.bundled import SCENARIOS
from calisim.servers.links import VXLAN_OVERHEAD
from calisim.servers.real import RealServer, RealServers
from calisim.servers.sim import UNDERLAY_MTU, ServerError, SimServers
from calisim.servers.underlay import PORT, Route

ICMP_HEADERS = 28
IPIP_OVERHEAD = 20
NESTED_LINK_MTU = UNDERLAY_MTU - 2 * VXLAN_OVERHEAD  # the machines' 1500, less the underlay's VXLAN and a link's


def servers(tmp_path) -> RealServers:
    found = RealServers.of(tmp_path, ("hostA", "hostB", "hostC"), "/proc/7/fd/5")
    found.routes = {"hostB": Route("eth0", "10.1.0.1"), "hostC": Route("eth1", "10.2.0.1")}
    found.addresses = {"hostB": "10.1.0.2", "hostC": "10.2.0.3"}
    return found


def test_the_users_ssh_runs_in_the_machines_namespace_as_root_with_keys_only(tmp_path):
    assert servers(tmp_path).user_ssh("hostB") == [
        "nsenter", "--net=/proc/7/fd/5", "--", "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "root@hostB"]


def test_each_server_floods_to_the_controller_as_it_reaches_it_and_to_every_other_server(tmp_path):
    found = servers(tmp_path)
    assert found.count == 2  # hostA is this machine: no sandbox of its own
    assert found.peers_of("hostB") == ("10.1.0.1", "10.2.0.3")
    assert found.peers_of("hostC") == ("10.2.0.1", "10.1.0.2")


def test_a_real_server_fails_once_its_session_ends_or_its_sandboxs_sshd_does_not_answer():
    server = RealServer("hostB", IPv4Interface("127.0.0.9/8"), Path("/nonexistent"), init_pid=999999999)
    assert server.failure().startswith("hostB: its server sandbox's sshd does not answer on 127.0.0.9:22 (")
    server.holder = subprocess.Popen(["sh", "-c", "exit 255"])
    server.holder.wait()
    assert server.failure() == "hostB: the ssh session holding its server sandbox ended (exit 255)"
    assert server.processes() == []  # its PID 1 is not this machine's


def test_without_a_handle_on_the_machine_real_servers_are_refused(tmp_path):
    with pytest.raises(ServerError, match="handle on this machine's network namespace"):
        RealServers.of(tmp_path, ("hostA", "hostB"), "").start()


def test_a_server_that_cannot_start_its_sandbox_is_one_line_naming_it(tmp_path, monkeypatch):
    """boot's own line (or ssh's last) after the server's name; its sshd files were made for it here."""
    found = servers(tmp_path)
    found._make_client_key()
    said = "cannot start its server sandbox: `ip link add eth0 netns 42 ...` failed: Operation not supported"
    monkeypatch.setattr(found, "user_ssh", lambda name: ["sh", "-c", f"read request; echo '{said}' >&2; exit 1",
                                                         "ssh"])
    with pytest.raises(ServerError) as error:
        found._start_server(1)
    assert str(error.value) == f"hostB: {said}"
    assert (tmp_path / "servers" / "hostB" / "ssh" / "sshd_config").exists()


# -- end to end: two machines on a LAN, emulated by two simulated servers ---------------------------
def give_root_the_lans_key(outer: SimServers, machine) -> None:
    """The controller machine's root gets a ~/.ssh (in its mount namespace only, over the machine's
    /root) with the key the machines accept and their host keys: a user's setup for `ssh root@B`."""
    upper = machine.directory / "root"
    (upper / ".ssh").mkdir(parents=True, mode=0o700)
    (upper / ".bashrc").write_text("")  # as the simulated servers' own (calisim.servers.init)
    shutil.copy(outer.client_key, upper / ".ssh" / "id_ed25519")
    (upper / ".ssh" / "id_ed25519").chmod(0o600)
    shutil.copy(outer.known_hosts, upper / ".ssh" / "known_hosts")
    (machine.directory / "root-work").mkdir()
    inside = outer.run_dir  # where the machine sees its directory
    subprocess.run(["nsenter", "-t", str(machine.init_pid), "-m", "--", "mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir=/root,upperdir={inside}/root,workdir={inside}/root-work", "/root"], check=True)


def seed_with_df_pings() -> str:
    """The seed's transcript, with steps proving where host1 and host2 run (this machine's sandbox
    and B's server sandbox, both on the VXLAN underlay), then a ping from workload-A to workload-E
    at full size with DF (IPIP inside a link inside the underlay) and one byte more not delivered
    (tunl0 keeps Calico's 1440: see the README)."""
    resolve = ("e=$(docker exec workload-A ping -c 1 workload-E | sed -n 's/^PING [^(]*(\\([0-9.]*\\)).*/\\1/p'); "
               "a=$(docker inspect -f '{{.State.Pid}}' workload-A); ")
    full = NESTED_LINK_MTU - IPIP_OVERHEAD - ICMP_HEADERS
    return SCENARIOS["two-host"].text() + "\n".join([
        "",
        "host1$ nsenter -t 1 -n ip -d -o link show srv0 | grep -q 'vxlan id'",
        "host2$ nsenter -t 1 -n ip -d -o link show eth0 | grep -q 'vxlan id'",
        "host2$ nsenter -t 1 -n ip -o addr show eth0 | grep -q 198.18.0.2/24",
        f"host1$ {resolve}nsenter -t $a -n ping -c 1 -W 3 -M do -s {full} $e",
        f"host1! {resolve}nsenter -t $a -n ping -c 1 -W 3 -M do -s {full + 1} $e",
        ""])


def machine_state(outer: SimServers, machine) -> dict:
    """What a machine holds that a run could leave: its processes, its links, UDP sockets on the
    underlay's port, server sandboxes' directories."""
    def there(command: str, namespace: str = "-n") -> str:
        return subprocess.run(["nsenter", "-t", str(machine.init_pid), namespace, "--", "sh", "-c", command],
                              capture_output=True, text=True, check=True).stdout
    return {"processes": len(machine.processes()), "links": there("ip -o link | cut -d@ -f1 | cut -d: -f2"),
            "udp": f":{PORT:04X} " in there("cat /proc/net/udp"),
            "directories": there("ls -d /tmp/calisim-server-* 2>/dev/null; true", "-m")}


def until_unchanged(outer: SimServers, before: dict, what: str) -> None:
    """Until both machines are as before: its ssh sessions end, a sandbox's namespace goes in the kernel's time."""
    deadline = time.monotonic() + 20
    while (after := {machine.name: machine_state(outer, machine) for machine in outer.servers}) != before:
        assert time.monotonic() < deadline, f"left on the machines after {what}: {before} then {after}"
        time.sleep(0.2)


def sandbox_holders(machine) -> list[int]:
    """The processes of machine (in its PID namespace) with a child in another PID namespace: a
    run's, whose child is its sandbox's PID 1, killed with it."""
    def other_namespace(pid: str) -> bool:
        try:
            return os.stat(f"/proc/{pid}/ns/pid").st_ino != machine.pid_namespace
        except FileNotFoundError:
            return False
    holders = []
    for pid in machine.processes():
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except FileNotFoundError:
            continue
        if any(other_namespace(child) for child in children):
            holders.append(pid)
    return holders

def run_killed_once_on_b(outer: SimServers, command: str) -> str:
    """command (a run whose steps end in a long sleep) started on A, and the process holding its
    sandbox killed by SIGKILL once its steps have begun (the servers started before them: B holds a server
    sandbox): the run's output."""
    machine_a, machine_b = outer.servers
    run = subprocess.Popen(outer.ssh_command(machine_a) + [command], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    deadline, output = time.monotonic() + 120, ""
    try:
        while "host1$ calicoctl node run" not in output or not machine_state(outer, machine_b)["directories"]:
            assert time.monotonic() < deadline and run.poll() is None, f"the run did not get going: {output}"
            if select.select([run.stdout], [], [], 1)[0]:
                output += run.stdout.readline()
        holders = sandbox_holders(machine_a)
        assert len(holders) == 1, holders
        os.kill(holders[0], signal.SIGKILL)  # its child, the sandbox's PID 1, dies with it, and the sandbox
        return output + run.communicate(timeout=60)[0]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


@pytest.mark.emulation
def test_the_seed_runs_on_two_real_machines_and_leaves_nothing_on_either(untouched, runs):
    """Then a run on them killed by SIGKILL (the process holding its sandbox) leaves nothing on either either:
    its ssh sessions die with it, and B's sandbox with the session that holds it."""
    outer = SimServers(RunDir.create("lan").path, 2)
    outer.start()
    try:
        machine_a, machine_b = outer.servers
        give_root_the_lans_key(outer, machine_a)
        (machine_a.directory / "seed.txt").write_text(seed_with_df_pings())
        (machine_a.directory / "crash.txt").write_text("host1$ calicoctl node run --name h1\nlab$ sleep 200\n")
        before = {machine.name: machine_state(outer, machine) for machine in outer.servers}
        run = (f"CALISIM_RUNS=/tmp/r {shlex.quote(sys.executable)} -m calisim run --topology two_host "
               f"--servers {machine_a.address.ip},{machine_b.address.ip} {outer.run_dir}")
        done = outer.ssh(machine_a, f"{run}/seed.txt", timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        until_unchanged(outer, before, "the run")
        run_killed_once_on_b(outer, f"{run}/crash.txt")
        until_unchanged(outer, before, "the run killed")
    finally:
        outer.stop()
