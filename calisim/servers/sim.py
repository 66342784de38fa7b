"""Simulated servers (``--servers sim:N``): N machines built inside the run's sandbox, so the
multi-server code can be tested on one box without passing by accident.

Each server is an ``unshare --net --mount --uts --pid`` child of the sandbox with
``calisim.servers.init`` as its PID 1: its own hostname, processes, /run, /tmp and run
directory, and its own sshd with host keys made for the run.  The servers and the controller
(the sandbox itself) share one underlay bridge at MTU 1500, as machines on one LAN do.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Interface
from pathlib import Path


from ..process import pids

UNSHARE = ["unshare", "--net", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child"]
UNDERLAY_BRIDGE = "srv0"
UNDERLAY_MTU = 1500
CONTROLLER = IPv4Interface("198.18.0.1/24")  # RFC 2544's benchmarking range: never a real LAN's; the sandbox's own
MAX_SERVERS = 99
SSHD = Path("/usr/sbin/sshd")
START_TIMEOUT = 20.0
# A server's first ssh: the handshake that stays as its ControlMaster.  ~0.5 s on an idle machine, 1-6 s
# at load 55-80 here, over 10 s at load 150 (the whole suite beside other work on 2 cores).
HANDSHAKE_TIMEOUT = 30.0

SSHD_CONFIG = """\
# Made by calisim for this run's simulated server {name}.
ListenAddress 0.0.0.0
HostKey {ssh}/ssh_host_ed25519_key
PidFile {ssh}/sshd.pid
AuthorizedKeysFile {ssh}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
# One ssh session a remote node, all on the controller's one connection: past sshd's default MaxSessions 10
# each would need a handshake of its own, and nodes started together would meet MaxStartups 10:30:100.
MaxSessions 200
MaxStartups 200:30:400
AcceptEnv CALISIM_*
"""


class ServerError(RuntimeError):
    """A simulated server could not be built or did not answer."""


@dataclass
class SimServer:
    """One simulated server: its name, underlay address, directory (seen by it at the run
    directory's path) and its PID 1 (in the sandbox's PID namespace)."""

    name: str
    address: IPv4Interface
    directory: Path
    unshare: subprocess.Popen | None = None
    init_pid: int | None = None
    pid_namespace: int | None = None  # its inode, kept: /proc/<init>/ns/pid goes with a dead PID 1

    @property
    def ssh_dir(self) -> Path:
        return self.directory / "ssh"

    @property
    def veth(self) -> str:
        return f"{UNDERLAY_BRIDGE}-{self.name}"

    def processes(self) -> list[int]:
        """Every process running on this server (read from the sandbox's /proc)."""
        return pids.in_namespace(self.pid_namespace, "pid") if self.pid_namespace else []

    def failure(self) -> str | None:
        """What is wrong with this server, in one line naming it; None while it runs and answers ssh."""
        if not pids.alive(self.init_pid):
            return f"{self.name}: the server is gone (its PID 1, {self.init_pid} here, exited)"
        try:
            socket.create_connection((str(self.address.ip), 22), timeout=2).close()
        except OSError as error:
            return f"{self.name}: sshd does not answer on {self.address.ip}:22 ({error.strerror or error})"
        return None


@dataclass
class SimServers:
    """N simulated servers of one run, started together and stopped by PID."""

    run_dir: Path
    count: int
    servers: list[SimServer] = field(default_factory=list)
    control_directory: Path | None = None  # the ssh control sockets: a socket's path has at most 108 bytes

    @property
    def directory(self) -> Path:
        return self.run_dir / "servers"

    @property
    def client_key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    def ssh(self, server: SimServer, command: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
        """Run command as root on server over ssh, as the controller reaches a real server."""
        return subprocess.run(self.ssh_command(server) + [command], capture_output=True, text=True, timeout=timeout)

    def ssh_command(self, server: SimServer) -> list[str]:
        return [*self.ssh_options(), f"root@{server.address.ip}"]

    def ssh_options(self) -> list[str]:
        """ssh with the run's key and host keys, over one multiplexed connection a server (a
        handshake costs about half a second here; Mininet's cluster edition leaves this off)."""
        return ["ssh", "-i", str(self.client_key), "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_directory}/%C",
                "-o", "ControlPersist=yes"]

    def node_ssh_options(self) -> list[str]:
        """ssh for a remote node's sessions: nothing of ssh's own on the node's output (no
        "Shared connection ... closed" on its tty), and ssh's errors in servers/ssh.log, where a
        session that failed can be read about."""
        return [*self.ssh_options(), "-o", "LogLevel=ERROR", "-E", str(self.ssh_log)]

    @property
    def underlay_mtu(self) -> int:
        return UNDERLAY_MTU

    @property
    def ssh_log(self) -> Path:
        return self.directory / "ssh.log"

    def start(self) -> list[SimServer]:
        """Build every server; on any failure stop those already started and raise ServerError."""
        self._check_prerequisites()
        self.control_directory = Path(tempfile.mkdtemp(prefix="calisim-ssh-"))
        try:
            self._make_client_key()
            self._make_underlay()
            for index in range(1, self.count + 1):
                self.servers.append(self._start_server(index))
            self._wait_reachable()
        except BaseException:
            self.stop()
            raise
        return self.servers

    def _check_prerequisites(self) -> None:
        check_count(self.count)
        if not SSHD.exists():
            raise ServerError(f"simulated servers need {SSHD} (Debian's openssh-server: run `make setup`)")

    def failures(self) -> list[str]:
        """One line for each server that is gone or no longer answers ssh."""
        return [failure for failure in (server.failure() for server in self.servers) if failure]

    def _make_underlay(self) -> None:
        from pyroute2 import IPRoute  # here, not at the top: `calisim`'s argument checks import this module

        with IPRoute() as ipr:
            ipr.link("add", ifname=UNDERLAY_BRIDGE, kind="bridge", mtu=UNDERLAY_MTU)
            index = ipr.link_lookup(ifname=UNDERLAY_BRIDGE)[0]
            ipr.addr("add", index=index, address=str(CONTROLLER.ip), prefixlen=CONTROLLER.network.prefixlen)
            ipr.link("set", index=index, state="up")

    def _make_client_key(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _keygen(self.client_key, "calisim controller")

    def _start_server(self, index: int) -> SimServer:
        address = IPv4Interface(f"{CONTROLLER.ip + index}/{CONTROLLER.network.prefixlen}")
        server = SimServer(f"server{index}", address, self.directory / f"server{index}")
        self._write_ssh_files(server)
        with open(server.directory / "init.log", "ab") as log:
            server.unshare = subprocess.Popen(sandbox_command(server.name, self.run_dir, server.directory),
                                              stdout=log, stderr=subprocess.STDOUT)
        server.init_pid = pids.wait_child(server.unshare, START_TIMEOUT)
        if server.init_pid is None:
            raise ServerError(f"{server.name}: its namespaces could not be made; see {server.directory}/init.log")
        server.pid_namespace = os.stat(f"/proc/{server.init_pid}/ns/pid").st_ino
        self._plug_into_underlay(server)
        return server

    def _write_ssh_files(self, server: SimServer) -> None:
        """Host key, sshd_config and authorized_keys, written where the server will see them
        (its directory appears at the run directory's path inside it)."""
        server.ssh_dir.mkdir(parents=True)
        _keygen(server.ssh_dir / "ssh_host_ed25519_key", f"root@{server.name}")
        inside = self.run_dir / "ssh"
        (server.ssh_dir / "sshd_config").write_text(SSHD_CONFIG.format(name=server.name, ssh=inside))
        shutil.copy(self.client_key.with_suffix(".pub"), server.ssh_dir / "authorized_keys")
        host_key = (server.ssh_dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        with open(self.known_hosts, "a") as known:
            known.write(f"{server.address.ip} {' '.join(host_key)}\n")

    def _plug_into_underlay(self, server: SimServer) -> None:
        """A veth from the underlay bridge to the server's eth0, MTU 1500, its address on it."""
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            bridge = ipr.link_lookup(ifname=UNDERLAY_BRIDGE)[0]
            ipr.link("add", ifname=server.veth, kind="veth", peer={"ifname": "eth0", "net_ns_pid": server.init_pid},
                     mtu=UNDERLAY_MTU)
            veth = ipr.link_lookup(ifname=server.veth)[0]
            ipr.link("set", index=veth, master=bridge, state="up")
        with IPRoute(netns=f"/proc/{server.init_pid}/ns/net", flags=0) as ipr:
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("set", index=eth0, mtu=UNDERLAY_MTU, state="up")
            ipr.addr("add", index=eth0, address=str(server.address.ip), prefixlen=server.address.network.prefixlen)

    def _wait_reachable(self) -> None:
        """Each server's sshd accepts the run's key (a TCP poll first: cheap while sshd starts).
        The first connections are made together, under one deadline: each is a handshake costing
        CPU, slow on a loaded machine, and one after another their times add up."""
        for server in self.servers:
            _wait_port(server, 22)
        sessions = {server.name: subprocess.Popen(self.ssh_command(server) + ["true"], stdin=subprocess.DEVNULL,
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                    for server in self.servers}
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        try:
            for name, session in sessions.items():
                try:
                    _, errors = session.communicate(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise ServerError(f"{name}: ssh as root with the run's key did not finish within "
                                      f"{HANDSHAKE_TIMEOUT:.0f}s") from None
                if session.returncode != 0:
                    raise ServerError(f"{name}: ssh as root with the run's key failed: {errors.strip()}")
        finally:
            for session in sessions.values():
                if session.poll() is None:
                    session.kill()
                    session.wait()

    def stop(self) -> list[str]:
        """Stop every server by its PID 1 (the kernel then ends all it ran) and remove the
        underlay; the names of servers with processes still left (none, normally)."""
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        started = [server for server in self.servers if server.unshare is not None]
        for server in started:  # the controller's multiplexing ssh, if one runs for the server
            subprocess.run(self.ssh_command(server) + ["-O", "exit"], capture_output=True, timeout=START_TIMEOUT)
        namespaces = {server.name: server.pid_namespace for server in started if server.pid_namespace}
        pids.stop([server.init_pid for server in started if server.init_pid], wait_killed=True)
        for server in started:
            server.unshare.wait(timeout=START_TIMEOUT)
        with IPRoute() as ipr:  # the veths too: the kernel deletes a gone namespace's in its own time
            for name in [UNDERLAY_BRIDGE, *(server.veth for server in started)]:
                for index in ipr.link_lookup(ifname=name):
                    try:
                        ipr.link("del", index=index)
                    except NetlinkError as error:
                        if error.code != errno.ENODEV:  # gone meanwhile, with its namespace
                            raise
        if self.control_directory is not None:
            shutil.rmtree(self.control_directory, ignore_errors=True)
        left = set(pids.in_namespaces(set(namespaces.values()), "pid"))
        return [name for name, inode in namespaces.items() if left & set(pids.in_namespace(inode, "pid"))]


def sandbox_command(name: str, run_dir: Path, directory: Path) -> list[str]:
    """A server's sandbox: its namespaces, calisim.servers.init their PID 1, directory seen at run_dir."""
    return [*UNSHARE, "--", sys.executable, "-m", "calisim.servers.init", name, str(run_dir), str(directory),
            str(run_dir / "ssh" / "sshd_config")]


def check_count(count: int) -> None:
    if not 1 <= count <= MAX_SERVERS:
        raise ServerError(f"sim:{count}: the number of simulated servers must be between 1 and {MAX_SERVERS}")


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)


def _wait_port(server: SimServer, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            socket.create_connection((str(server.address.ip), port), timeout=1).close()
            return
        except OSError as error:
            if time.monotonic() > deadline:
                raise ServerError(f"{server.name}: sshd does not answer on {server.address.ip}:{port} "
                                  f"within {START_TIMEOUT:.0f}s ({error}); see {server.directory}/sshd.log") from None
            time.sleep(0.05)
