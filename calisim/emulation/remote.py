"""Calico hosts on other servers: Mininet's RemoteHost shape (its shell and every popen over the
server's one multiplexed ssh connection) with what a local CalicoHost has, made on its server.

A remote host's directories live on its server, at the run directory's path there (a simulated
server sees its own directory at that path, as a real one has its own disk): they are made, and
its fstab and files written, through its own shell, never by a local path.  ssh does not carry
``popen(env=...)`` or a working directory, so both are spelt into the remote command line.
"""

from __future__ import annotations

import marshal
import os
import shlex
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from ..docker.service import Dockerd
from ..node import NodePaths, zygote_client
from ..node.bird import Bird, write_checked
from ..servers import processes
from ..servers.cluster import remote_bases, vxlan_link_class
from ..servers.gather import gather_all
from ..servers.links import VXLAN_OVERHEAD
from ..servers.placement import Servers
from ..servers.real import RealServers
from ..servers.sim import CONTROLLER, UNDERLAY_MTU, ServerError, SimServers
from ..servers.watchdog import Watchdog
from . import sandbox
from .rundir import RunDir
from .topology import CalicoHost, VethLink, begin_hosts, own_uts, run_ip_batches, write_step

LINK_MTU = UNDERLAY_MTU - VXLAN_OVERHEAD  # every link of a lab over simulated servers: its segments cross the underlay
FORK_TIMEOUT = 30.0  # seconds for a server's zygote to fork its hosts' dockerds (its answers: ~10 ms each)


class RemoteCalicoMixin:
    """What differs for a CalicoHost whose shell runs on another server (placed before
    Mininet's RemoteMixin, so its popen and _popen see commands before ssh is put in front)."""

    isRemote: bool
    sshcmd: list[str]

    def prepare_state(self, fstab_text: str) -> list[str]:
        """Shell steps making the host's directories and fstab on its server (run by mount_in)."""
        directories = [*self.state_subdirectories(), *(str(view.upper) for view in self.views),
                       *(str(view.work) for view in self.views), *(private for _, private in self.privateDirs)]
        return [f"mkdir -p {' '.join(map(shlex.quote, directories))}",
                write_step(str(self.state_dir / "fstab"), fstab_text)]

    def write_file(self, path: str, text: str) -> None:
        """path in this host's view (its mount namespace, on its server), text sent on ssh's
        standard input (a long line typed into the host's shell would overrun its terminal)."""
        inside = shlex.join(["nsenter", "-t", str(self.pid), "-m", "--", "sh", "-c", f"cat > {shlex.quote(path)}"])
        done = subprocess.run([*self.ssh_command(), inside], input=text, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise ServerError(f"{self.name} on {self.server}: cannot write {path}: {done.stderr.strip()}")

    def ssh_command(self) -> list[str]:
        """ssh to this host's server without a terminal; a command follows."""
        return [part for part in self.sshcmd if part != "-tt"]

    def view_path(self, path: str) -> Path:
        raise ServerError(f"{self.name} runs on {self.server}: its files are reached through it (write_file), "
                          "not through a local path")

    def popen(self, *args, env: dict[str, str] | None = None, **kwargs):
        """Mininet's popen over ssh, the environment given as `env -i K=V ...` (ssh drops env=)."""
        argv = list(args[0]) if len(args) == 1 and isinstance(args[0], list) else [*args]
        prefix = ["env", "-i", *(f"{key}={value}" for key, value in env.items())] if env is not None else []
        return super().popen([shlex.quote(part) for part in [*prefix, *argv]], **kwargs)

    def _popen(self, cmd, **params):
        if self.shell is None and cmd and cmd[0] == "mnexec":
            cmd = own_uts(cmd)
        return super()._popen(cmd, **params)

    def shell_command(self, argv: list[str], environment: dict[str, str],
                      terminal: bool = False) -> tuple[list[str], dict[str, str]]:
        """ssh to the server, into the host's namespaces, from its home, with environment spelt out
        (and a terminal there for an interactive shell)."""
        inside = self.enter_command(["env", "-i", *(f"{key}={value}" for key, value in environment.items()), *argv])
        ssh = self.ssh_command()  # Mininet's: sudo -E -u USER ssh OPTIONS... DESTINATION
        at = ssh.index("ssh") + 1
        return [*ssh[:at], *(["-tt"] if terminal else []), *ssh[at:], shlex.join(inside)], dict(os.environ)

    def netns_inode(self) -> int:
        raise ServerError(f"{self.name} runs on {self.server}: its processes are found there, not in this /proc")


def dockerds_ready_script(dockerds: dict, pids: dict[str, int]) -> str:
    """A second of polling on the dockerds' server: exit 0 once every socket is there; 3, with
    the host's name and its log's last line, for one whose process is gone; 1, with the names
    of those still to come, after the second."""
    checks = "".join(f"test -e {shlex.quote(str(dockerd.socket))} || {{ kill -0 {pids[name]} 2>/dev/null || "
                     f"{{ echo {name}; tail -n 1 {shlex.quote(str(dockerd.log))}; exit 3; }}; "
                     f"left=\"$left {name}\"; }}; " for name, dockerd in dockerds.items())
    return f"for i in $(seq 20); do left=; {checks}test -z \"$left\" && exit 0; sleep 0.05; done; echo $left; exit 1"


def remote_calico_host_class(ssh_options: list[str]) -> type:
    """A CalicoHost on a server reached with these ssh options (the run's key and connection)."""
    return type("RemoteCalicoHost", (RemoteCalicoMixin, *remote_bases(CalicoHost)),
                {"sshbase": [*ssh_options, "-tt"]})


class ServersOfRun:
    """The servers a cluster spreads over (simulated, or sandboxes on real ones: the same from
    here on), and how its nodes and links are made on them."""

    def __init__(self, run_dir: RunDir, servers: Servers, placement: dict[str, str]):
        self.run_dir = run_dir
        self.servers = servers
        self.placement = placement
        self.sim = SimServers(run_dir.path, len(servers.names)) if servers.simulated else self._real(run_dir, servers)
        self.zygotes: list[processes.RemoteProcess] = []
        self.daemons: dict[str, processes.RemoteProcess] = {}  # by node: its dockerd, or a router's BIRD
        self.forwarded: dict[str, Path] = {}  # remote socket path -> its local end
        self.watchdog: Watchdog | None = None  # a dead server interrupts the run (ServerLost) while held
        self.gathered: list = []  # at stop: where each server's run directory went (gather.Gathered)

    @staticmethod
    def _real(run_dir: RunDir, servers: Servers) -> RealServers:
        try:
            machine = sandbox.machine_netns()
        except sandbox.SandboxError as error:
            raise ServerError(f"--servers {','.join(servers.names)}: {error}") from None
        return RealServers.of(run_dir.path, servers.names, machine)

    def start(self) -> None:
        self.sim.start()
        self.watchdog = Watchdog(self.sim.failures).start()

    @property
    def link_mtu(self) -> int:
        """Every link's MTU: its segment may cross the underlay inside a VXLAN."""
        return self.sim.underlay_mtu - VXLAN_OVERHEAD

    def stop(self) -> list[str]:
        """The watchdog (servers going now is no failure), the zygotes and daemons by PID, every
        server's run directory gathered into this one's servers/<name>/, then every server by its
        PID 1; the names of servers with processes left.  The servers stop even when a stop by PID
        fails (a server that no longer answers): left running, they would hold the underlay's
        bridge and every later run's servers would fail to start."""
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None
        try:
            processes.stop([*self.daemons.values(), *self.zygotes])
            self.daemons, self.zygotes = {}, []
            self.gathered = gather_all({server.name: self.sim.ssh_command(server) for server in self.sim.servers},
                                       self.run_dir.path, self.run_dir.path)
        finally:
            left = self.sim.stop()
        return left

    def ssh(self, server: str) -> list[str]:
        """ssh to server over its one connection; a command follows."""
        return self.sim.ssh_command(next(found for found in self.sim.servers if found.name == server))

    def remote_servers(self) -> list[str]:
        """The servers other than this one that run Calico hosts."""
        return sorted({self.placement[name] for name in self.placement if self.is_remote(name)})

    def start_zygotes(self, command: list[str], environment: dict[str, str], log: Path) -> None:
        """One node zygote a server of Calico hosts, in that server's own namespaces, at the same
        socket path as here (each server sees its own directory at the run directory's path)."""
        for server in self.remote_servers():
            self.zygotes.append(processes.start(self.ssh(server), server, command, environment, str(log)))

    def await_zygotes(self, socket: Path, timeout: float) -> None:
        for process in self.zygotes:
            processes.wait_for_path(process, str(socket), "the node zygote", timeout)

    def start_dockerds(self, dockerds: dict[str, Dockerd], zygote_socket: Path, environment) -> None:
        """Each host's dockerd forked by its server's node zygote into the host's namespaces, as
        here (calisim.docker.service), asked for in one ssh session a server (await_dockerds: until
        they are up)."""
        for server, group in self._by_server(dockerds).items():
            self._fork_dockerds(server, group, zygote_socket, environment)

    def await_dockerds(self, dockerds: dict[str, Dockerd]) -> None:
        """Until every socket of these started dockerds is there (polled in one ssh session a server)."""
        for server, group in self._by_server(dockerds).items():
            self._await_dockerds(server, group)

    def _by_server(self, dockerds: dict[str, Dockerd]) -> dict[str, dict[str, Dockerd]]:
        by_server: dict[str, dict[str, Dockerd]] = {}
        for name, dockerd in dockerds.items():
            by_server.setdefault(self.placement[name], {})[name] = dockerd
        return by_server

    def _fork_dockerds(self, server: str, dockerds: dict[str, Dockerd], zygote_socket: Path, environment) -> None:
        """The server's zygote asked for these dockerds (zygote_client.fork_requested there, the
        requests on ssh's standard input), stopped ones' sockets removed first; each one forked is
        known by its PID there, and ServerError names any the zygote refused."""
        requests = [dockerd.fork_request(zygote_socket, environment(name)) for name, dockerd in dockerds.items()]
        sockets = " ".join(shlex.quote(str(dockerd.socket)) for dockerd in dockerds.values())
        script = f"rm -f {sockets} && exec {shlex.join(zygote_client.fork_command())}"
        try:
            done = subprocess.run([*self.ssh(server), script], input=marshal.dumps(requests), capture_output=True,
                                  timeout=FORK_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ServerError(f"{server}: its node zygote did not answer for the dockerds of {', '.join(dockerds)} "
                              f"within {FORK_TIMEOUT:.0f}s") from None
        answers = done.stdout.decode(errors="replace").splitlines()
        refused = []
        for (name, dockerd), answer in zip(dockerds.items(), answers):
            if answer.startswith("pid "):
                self.daemons[name] = processes.RemoteProcess(server, self.ssh(server), int(answer.split()[1]))
            else:
                refused.append(f"{dockerd.name}: {answer.removeprefix('error ')}")
        if len(answers) < len(dockerds):
            why = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
            refused.append(f"{', '.join(list(dockerds)[len(answers):])}: no answer ({why})")
        if refused:
            raise ServerError(f"{server}: dockerd not started: {'; '.join(refused)}")

    def _await_dockerds(self, server: str, dockerds: dict[str, Dockerd]) -> None:
        """Until every one's socket is there on the server, asked a second at a time over ssh;
        ServerError naming one that exits first (with its log's last line: why) or is late."""
        timeout = Dockerd.start_timeout + len(dockerds)  # they start side by side on the server's cores
        script = dockerds_ready_script(dockerds, {name: self.daemons[name].pid for name in dockerds})
        deadline = time.monotonic() + timeout
        try:
            while (done := subprocess.run([*self.ssh(server), script], capture_output=True, text=True,
                                          timeout=timeout)).returncode == 1 and time.monotonic() < deadline:
                pass
        except subprocess.TimeoutExpired:
            raise ServerError(f"{server}: did not answer whether its dockerds are up within {timeout:.0f}s") from None
        if done.returncode == 3:
            name, _, last_words = done.stdout.partition("\n")
            raise ServerError(f"{server}: {dockerds[name].name} exited before its socket appeared: "
                              f"{last_words.strip() or 'see ' + str(dockerds[name].log)}")
        if done.returncode == 1:
            late = ", ".join(dockerds[name].name for name in done.stdout.split())
            raise ServerError(f"{server}: no socket from {late} within {timeout:.0f}s")
        if done.returncode != 0:
            raise ServerError(f"{server}: cannot see whether its dockerds are up: "
                              f"{done.stderr.strip() or f'exit status {done.returncode}'}")

    def start_router_bird(self, router: CalicoHost, daemon: Bird, config_text: str) -> None:
        """A router's BIRD on its server: its config checked here by `bird -p` and written there
        by the router's shell, BIRD started in the router's namespaces, up once its socket is there."""
        with tempfile.TemporaryDirectory(prefix="calisim-bird-") as scratch:
            write_checked(config_text, Path(scratch) / "bird.cfg")
        router.write_file(str(daemon.paths.bird_config), config_text)
        argv = ["nsenter", "-t", str(router.pid), "-n", "-m", "-u", "--", *daemon.command()]
        process = processes.start(self.ssh(router.server), router.server, argv, {"PATH": os.environ["PATH"]},
                                  str(daemon.log))
        self.daemons[router.name] = process
        processes.wait_for_path(process, str(daemon.paths.bird_socket), daemon.name, daemon.start_timeout)

    def stop_daemons(self, names: list[str]) -> None:
        """The dockerds and routers' BIRDs of these nodes, by PID on their servers."""
        processes.stop([self.daemons.pop(name) for name in names if name in self.daemons])

    def stop_nodes(self, hosts: list[CalicoHost]) -> None:
        """The calico-nodes of remote hosts, by the PIDs their pid files hold on their servers."""
        by_server: dict[str, list[str]] = {}
        for host in hosts:
            by_server.setdefault(host.server, []).append(shlex.quote(str(NodePaths(host.state_dir / "run",
                                                                                   host.state_dir / "log").pid_file)))

        def stop_there(server: str, pid_files: list[str]) -> None:
            found = processes.run(self.ssh(server), server, f"cat {' '.join(pid_files)} 2>/dev/null; true")
            processes.stop_pids(self.ssh(server), server, [int(pid) for pid in found.split() if pid.isdigit()])
        with ThreadPoolExecutor(max_workers=max(1, len(by_server))) as pool:  # every server at once
            for future in [pool.submit(stop_there, *item) for item in by_server.items()]:
                future.result()

    def running_pid(self, host: CalicoHost, pid_file: Path) -> int | None:
        """The PID pid_file names on host's server, if that process runs there (as pids.from_file here)."""
        quoted = shlex.quote(str(pid_file))
        found = processes.run(self.ssh(host.server), host.server,
                              f"pid=$(cat {quoted} 2>/dev/null) && kill -0 \"$pid\" 2>/dev/null && echo \"$pid\"; true")
        return int(found) if found.strip().isdigit() else None

    def socket_of(self, host: CalicoHost, path: Path) -> Path:
        """A local path reaching the unix socket path of a host on another server (BIRD's)."""
        if str(path) not in self.forwarded:
            local = self.sim.control_directory / f"{host.name}-{path.name}"
            self.forwarded[str(path)] = processes.forward(self.ssh(host.server), host.server, local, str(path))
        return self.forwarded[str(path)]

    def is_remote(self, node: str) -> bool:
        return self.placement.get(node, self.servers.first) != self.servers.first

    def host_factory(self, topo) -> Callable[..., CalicoHost]:
        """Mininet's host constructor: a CalicoHost here, a RemoteCalicoHost on another server,
        every one begun at once, now (begin_hosts: a remote one is a few round trips over ssh,
        and made one after another, as Mininet adds hosts, they were most of a bring-up)."""
        remote = remote_calico_host_class(self.sim.node_ssh_options())
        addresses = {server.name: str(server.address.ip) for server in self.sim.servers}

        def build(name: str, **params) -> CalicoHost:
            state_dir = self.run_dir.host(name)
            if not self.is_remote(name):
                return CalicoHost(name, state_dir=state_dir, **params)
            server = self.placement[name]
            return remote(name, state_dir=state_dir, server=server, serverIP=addresses[server], user="root", **params)

        return begin_hosts(topo, build)

    def link_class(self) -> type:
        """Links: a veth on one server (each end an index of its own, as here), a VXLAN pair
        (one VNI a link) between two."""
        return vxlan_link_class(str(CONTROLLER.ip), same_server=VethLink, underlay_mtu=self.sim.underlay_mtu)

    def fit_mtu(self, net) -> None:
        """Every interface at the cross-server link's MTU: a bridge with one port over the underlay
        drops what a 1500-byte port sends to it, so a segment's MTU is its smallest link's."""
        run_ip_batches({node: [f"link set {intf.name} mtu {self.link_mtu}" for intf in node.intfList()
                               if intf.name != "lo"] for node in [*net.hosts, *net.switches]})
