"""The Python API: build a Calico cluster from a topology, run commands in its hosts, stop it.

    from calisim.emulation import sandbox
    from calisim.emulation import Cluster
    import topologies

    sandbox.enter()                      # re-exec this script inside a private namespace
    with Cluster(topologies.load("two_host")) as cluster:
        cluster.start_nodes()            # `calicoctl node run` on every host
        print(cluster.run("host1", "calicoctl node status").stdout)

Everything the cluster starts is stopped by PID when it stops (or when the ``with`` block is
left by an exception or Ctrl-C), and every namespace it made is gone.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from mininet.log import setLogLevel
from mininet.net import Mininet

from ..datastore import Datastore, DatastoreError, Synchronous, keys
from ..docker.service import Dockerd
from ..node import NodePaths, bird, zygote, zygote_client
from ..process import pids
from ..process.daemon import Daemon, DaemonError, stop_all
from ..servers import placement
from ..servers.sim import ServerError
from . import overlay, remote, sandbox
from .etcd_cluster import EtcdCluster
from .sandbox import EMULATION
from .rundir import RunDir
from .topology import (CalicoHost, CalicoTopo, ConcurrentMininet, VethLink, add_ipv6_addresses, local_hosts,
                       pin_segment_neighbours)

DEFAULT_TIMEOUT = 120.0
CONTROL_SOCKET = "lab.sock"  # in the run directory: the cluster's control socket (calisim.emulation.lab)
CONTROL_SOCKET_ENV = "CALISIM_LAB_SOCKET"
DIAGNOSTICS = ("ip -4 -br addr", "ip -4 route", "ip -4 neigh", "ip -d link show tunl0")
CALICO_DIAGNOSTICS = ("birdc -s /var/run/calico/bird.ctl show protocols",
                      "birdc -s /var/run/calico/bird.ctl show route",
                      "tail -n 40 /var/log/calico/node.log",
                      # calico-node dumps its threads' stacks on SIGUSR1 (a stuck tunnel or watch shows there)
                      "kill -USR1 $(cat /var/run/calico/calico-node.pid) && timeout 5 sh -c "
                      "'until grep -qs ^Thread /var/log/calico/threads.log; do sleep 0.05; done; "
                      "cat /var/log/calico/threads.log'")
BIRD_DIAGNOSTICS = CALICO_DIAGNOSTICS[:2]  # routers and reflectors run BIRD on the same socket path
BIRD_START_TIMEOUT = 20.0
LOCAL_SERVER = "localhost"
NODE_RUN_PARALLEL = 32  # `calicoctl node run`s at once: each mostly waits (etcd, BIRD), so more overlap
log = logging.getLogger("calisim")


class ClusterError(RuntimeError):
    """The cluster could not be built, or a request named something it does not have."""


@dataclass(frozen=True)
class CommandResult:
    host: str
    command: str
    rc: int
    stdout: str
    stderr: str
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll predicate until it returns a true value or timeout passes (then ClusterError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


Progress = Callable[[str, int, int], None]  # (stage, done, total): "hosts built", "nodes started"...


def no_progress(stage: str, done: int, total: int) -> None:
    """Where a cluster's progress goes unless someone shows it (`up` and `run` on a terminal)."""


class Cluster(EtcdCluster):
    """A running emulated Calico cluster: Mininet hosts, etcd in one of them (or an etcd cluster
    beside them: etcd_cluster.py), and the way in."""

    def __init__(self, topo: CalicoTopo, run_dir: RunDir | None = None, ipip_backend: str = "auto",
                 docker: bool = True, bgp_timers: bird.Timers = bird.Timers(),
                 servers: str | None = None, place: dict[str, str] | None = None):
        self.topo = topo
        try:  # --servers and --place refused before anything starts
            self.servers, self.placement = placement.plan(topo, servers, place)
        except placement.PlacementError as error:
            raise ClusterError(str(error)) from None
        # hold time, graceful restart: Calico's unless changed, in every host's environment
        self.bgp_timers = bgp_timers
        self.run_dir = run_dir or RunDir.create(topo.name)
        self.ipip_backend = ipip_backend  # passed to calico-node as CALICO_IPIP_BACKEND
        self.docker = docker  # run an emulated dockerd in every Calico host
        self.net: Mininet | None = None
        self.etcd_processes: dict[str, subprocess.Popen] = {}  # by node: etcd_host, or the members' etcd1..N
        self.dockerds: dict[str, subprocess.Popen | zygote_client.ForkedProcess] = {}  # forked by the zygote
        self.birds: dict[str, subprocess.Popen] = {}  # BIRD in the topology's routers (ToRs, spines)
        self.zygote: subprocess.Popen | None = None  # forks the calico-nodes (calisim.node.zygote); may be handed in
        self.progress: Progress = no_progress  # long work reported stage by stage
        self.on_servers: remote.ServersOfRun | None = None  # the servers of a run with --servers, once started

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Cluster":
        sandbox.require()
        try:
            self._check_host_views()
            self._install_calicoctl()
            self._start_servers()
            self._spawn_zygote()  # imports while the network is built
            self._spawn_server_zygotes()
            sandbox.mount_memory(self.etcd_memory)  # before the hosts: each mount namespace copies it
            self._build_network()
            self._start_router_birds()
            self._start_etcd()
            self._await(self._zygote, self.zygote)
            self._await_server_zygotes()
            log.info("node zygote ready")
            if self.docker:
                self._start_dockerds(self.hosts)
                log.info("dockerd up in %s", ", ".join(self.dockerds))
        except BaseException:
            self.stop()
            raise
        return self

    def _check_host_views(self) -> None:
        """Before any daemon starts: the hosts' copy-on-write /etc and /var/lib can have their
        upper directories in the run directory (calisim.emulation.overlay), or the run stops."""
        try:
            overlay.probe(self.run_dir.path / "hosts")
        except overlay.OverlayError as error:
            raise ClusterError(str(error)) from None

    def _start_servers(self) -> None:
        """The run's simulated servers, when it has --servers (before any node: nodes live on them)."""
        if self.servers is None:
            return
        try:
            self.on_servers = remote.ServersOfRun(self.run_dir, self.servers, self.placement)
            self.on_servers.start()
        except ServerError as error:
            raise ClusterError(str(error)) from None

    def _build_network(self) -> None:
        Mininet.inited = True  # Mininet.init() would raise limits and sysctls of the namespace it runs in
        setLogLevel("error")  # its bridge-nf warnings concern the machine, not the emulation
        host, link = ((self.on_servers.host_factory(self.topo), self.on_servers.link_class()) if self.on_servers
                      else (local_hosts(self.topo, self.run_dir.host), VethLink))
        self.net = ConcurrentMininet(topo=self.topo, host=host, controller=None,
                           link=link, autoSetMacs=False, build=False, waitConnected=False)
        try:
            self.net.build()
        except overlay.OverlayError as error:
            raise ClusterError(str(error)) from None
        if self.on_servers:
            self.on_servers.fit_mtu(self.net)
        self.net.start()
        for router in self.topo.routers():
            # the router's own namespace
            self.host(router).cmd("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")
        add_ipv6_addresses(self.net)
        pin_segment_neighbours(self.net)
        log.info("built %s: %s", self.topo.name, ", ".join(self.hosts))
        self.progress("hosts built", len(self.net.hosts), len(self.net.hosts))

    def _start_router_birds(self) -> None:
        """BIRD in every router the topology rendered a config for: written to the router's run
        directory (= its /var/run/calico) once `bird -p` accepts it, started, up once its socket answers."""
        for name in self.topo.bgp_routers():
            daemon = self._router_bird(name)
            if self.on_servers is not None and self.on_servers.is_remote(name):
                self._start_remote_router_bird(name, daemon)
                continue
            try:
                daemon.configure(self.topo.nodeInfo(name)["bird"])
            except bird.BirdError as error:
                raise ClusterError(f"the BIRD config of router {name}: {error}") from None
            self.birds[name] = daemon.start(self.host(name).popen)
        for name, process in self.birds.items():
            self._await(self._router_bird(name), process)
        for name in self.topo.underlay_routers():  # e.g. spines: the racks reach etcd through them
            wait_until(lambda: _all_established(self.bird(name)), BIRD_START_TIMEOUT * 3,
                       interval=0.2, what=f"every BGP session of {name}")
        if self.birds:
            log.info("BIRD running in %s", ", ".join(self.birds))

    def _start_remote_router_bird(self, name: str, daemon: bird.Bird) -> None:
        try:
            self.on_servers.start_router_bird(self.host(name), daemon, self.topo.nodeInfo(name)["bird"])
        except (bird.BirdError, ServerError) as error:
            raise ClusterError(f"the BIRD of router {name}: {error}") from None

    def _router_bird(self, name: str) -> bird.Bird:
        state = self.host(name).state_dir
        return bird.Bird(NodePaths(state / "run", state / "log"), name=f"BIRD in {name}",
                         start_timeout=BIRD_START_TIMEOUT, ready_interval=0.1)

    @staticmethod
    def _await(daemon: Daemon, process) -> None:
        """Until the daemon's ready check says yes: ClusterError if it exits or does not answer in time."""
        try:
            daemon.wait_ready(process)
        except DaemonError as error:
            raise ClusterError(str(error)) from None

    @property
    def bin_dir(self) -> Path:
        """The run's own commands, first on every host's PATH."""
        return self.run_dir.path / "bin"

    def _install_calicoctl(self) -> None:
        """The hosts' `calicoctl`: the node zygote's client in C (calisim/node/calicoctl.c; why: see there)."""
        if not zygote_client.install(str(self.bin_dir)):
            raise ClusterError(f"the hosts' calicoctl {zygote_client.CALICOCTL} is not built: run `make setup`")

    @property
    def zygote_socket(self) -> Path:
        return self.run_dir.path / "zygote.sock"

    @property
    def _zygote(self) -> zygote.ZygoteDaemon:
        return zygote.ZygoteDaemon.of_run(self.run_dir.path)

    def _spawn_zygote(self) -> None:
        """The node zygote, in the sandbox's own namespaces: it forks each host's calico-node into
        that host's (calisim.node.zygote).  One already running is kept: the command line starts
        it before its own imports (calisim.cli.runs), which its imports then overlap."""
        if self.zygote is None:
            self.zygote = self._zygote.spawn()

    def _spawn_server_zygotes(self) -> None:
        """A node zygote on each other server with Calico hosts, started there as here (its
        imports, too, overlap the network's build)."""
        if self.on_servers is None:
            return
        try:
            self.on_servers.start_zygotes(zygote.command_line(self.zygote_socket), zygote.environment(),
                                          self._zygote.log)
        except ServerError as error:
            raise ClusterError(str(error)) from None

    def _await_server_zygotes(self) -> None:
        if self.on_servers is None:
            return
        try:
            self.on_servers.await_zygotes(self.zygote_socket, self._zygote.start_timeout)
        except ServerError as error:
            raise ClusterError(str(error)) from None

    def start_dockerd(self, name: str) -> None:
        """Start host name's dockerd again (after a fault stopped it)."""
        self._start_dockerds([name])

    def _start_dockerds(self, names: list[str]) -> None:
        """One emulated dockerd per Calico host, as the seed's machines each ran Docker (those of
        hosts on other servers forked by their servers' zygotes while these start here)."""
        remote_ones = {name: self._dockerd(name) for name in names
                       if self.on_servers is not None and self.on_servers.is_remote(name)}
        names = [name for name in names if name not in remote_ones]
        try:
            if remote_ones:
                self.on_servers.start_dockerds(remote_ones, self.zygote_socket, self.environment)
            for name in names:
                self.dockerds[name] = self._launch_dockerd(name)
            if remote_ones:
                self.on_servers.await_dockerds(remote_ones)
        except ServerError as error:
            raise ClusterError(str(error)) from None
        for done, name in enumerate(names, start=1):
            self._await(self._dockerd(name), self.dockerds[name])
            self.progress("dockerds up", done, len(names))

    def _launch_dockerd(self, name: str) -> "subprocess.Popen | zygote_client.ForkedProcess":
        """Forked by the node zygote into the host (calisim.docker.service), or executed there without one."""
        daemon = self._dockerd(name)
        if self.zygote is not None:
            try:
                return daemon.fork(self.zygote_socket, self.environment(name))
            except zygote_client.ZygoteError as error:
                log.warning("%s; starting %s without it", error, daemon.name)
        return daemon.start(self.host(name).popen, env=self.environment(name))

    def _dockerd(self, name: str) -> Dockerd:
        return Dockerd(self.host(name).state_dir, name=f"dockerd in {name}", host_pid=self.host(name).pid)

    def stop(self) -> None:
        """Stop every process of the run by PID, then let Mininet remove the namespaces and links;
        each stage runs though one before it failed (servers left would block the next run)."""
        with contextlib.ExitStack() as stages:  # callbacks run last pushed, first
            stages.callback(self._stop_servers)
            stages.callback(self._stop_network)
            stages.callback(self._stop_etcd_and_zygote)  # the last processes: nothing uses them now
            if self.net is not None:  # routers and reflectors run processes too
                self._stop_host_processes([self.host(name) for name in self.topo.hosts(sort=True)])
        log.info("stopped; logs kept in %s", self.run_dir.path)

    def _stop_etcd_and_zygote(self) -> None:
        self._stop_etcd_for_good(*[self.zygote] if self.zygote is not None else [])
        self.zygote = None

    def _stop_network(self) -> None:
        if "faults" in self.__dict__:
            self.faults.close()
        if self.net is not None:
            self.net.stop()
            self.net = None

    def _stop_servers(self) -> None:
        if self.on_servers is not None and (left := self.on_servers.stop()):
            log.warning("processes left on %s after their PID 1 stopped", ", ".join(left))
        self.on_servers = None

    def _stop_host_processes(self, hosts: list[CalicoHost]) -> None:
        """The dockerds first (they remove their containers through the nodes' plugins), then the
        calico-nodes (each stops its BIRD) and the routers' BIRDs, then whatever else still runs in
        a host or was started from one (containers live in namespaces of their own but carry the
        run's mark).  Each stage signals every host at once, then waits for the slowest.  On other servers too,
        the routers' BIRDs go after every dockerd: a ToR stopped first cuts its rack's dockerds off
        etcd, and each would wait out its etcd deadline to leave its networks."""
        dockerds = [self.dockerds.pop(host.name) for host in hosts if host.name in self.dockerds]
        routers = [self.birds.pop(host.name) for host in hosts if host.name in self.birds]
        calico = set(self.hosts)
        for processes, names in ((dockerds, [host.name for host in hosts if host.name in calico]),
                                 (routers, [host.name for host in hosts if host.name not in calico])):
            if self.on_servers is not None:
                self.on_servers.stop_daemons(names)
            stop_all(processes)
        here = [host for host in hosts if not getattr(host, "isRemote", False)]  # a server's end with its PID 1
        if self.on_servers is not None:
            self.on_servers.stop_nodes([host for host in hosts if host not in here])
        nodes = (NodePaths(host.state_dir / "run", host.state_dir / "log").running_pid() for host in here)
        pids.stop([pid for pid in nodes if pid is not None])
        keep = {host.pid for host in here} | {process.pid for process in self.etcd_processes.values()}
        started_here = (set(pids.in_namespaces({host.netns_inode() for host in here}))
                        | set(pids.with_environment(f"CALISIM_RUN_DIR={self.run_dir.path}")))
        pids.stop([p for p in started_here if p not in keep])

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- access ----------------------------------------------------------------------------
    @functools.cached_property
    def faults(self):
        """Links, daemons, partitions and hosts broken on purpose (calisim.emulation.faults)."""
        from .faults import Faults

        return Faults(self)

    @property
    def hosts(self) -> list[str]:
        return self.topo.calico_hosts()

    def server_of(self, node: str) -> str:
        """The server node runs on: a name of --servers, or "localhost" (Mininet's name for the
        machine calisim runs on) in a run without servers."""
        if node not in self.topo.hosts():
            raise ClusterError(f"unknown node {node!r} (this topology has {', '.join(self.topo.hosts(sort=True))})")
        return self.placement.get(node, LOCAL_SERVER)

    def host(self, name: str) -> CalicoHost:
        if self.net is None:
            raise ClusterError("the cluster is not running")
        if name not in self.net.nameToNode or name not in self.topo.hosts():
            raise ClusterError(f"unknown host {name!r} (this topology has {', '.join(self.topo.hosts(sort=True))})")
        return self.net.nameToNode[name]

    def environment(self, name: str) -> dict[str, str]:
        """What a shell on the host sees, as on the seed's machines after `export ETCD_ENDPOINTS=...`."""
        return {
            "PATH": f"{self.bin_dir}:{Path(sys.executable).parent}:"
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.host(name).home), "USER": "root", "LANG": "C.UTF-8",
            "TERM": os.environ.get("TERM", "dumb"),
            "ETCD_ENDPOINTS": self.etcd_endpoint, "CALISIM_RUN_DIR": str(self.run_dir.path),
            "DOCKER_HOST": "unix:///run/docker/docker.sock", "CALICO_IPIP_BACKEND": self.ipip_backend,
            sandbox.SANDBOX_ENV: os.environ.get(sandbox.SANDBOX_ENV, ""),
            **self.bgp_timers.environment(),
            **({zygote_client.ZYGOTE_ENV: str(self.zygote_socket)} if self.zygote is not None else {}),
        }

    def run(self, name: str, command: str, timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        """Run command with `bash -c` in a fresh shell on host name (pipes and redirections work);
        on EMULATION (`lab`), in the emulation's own namespaces, where `calisim fault` reaches this
        cluster through its control socket."""
        argv, environment = ((["bash", "-c", command], self.emulation_environment()) if name == EMULATION
                             else self.host(name).shell_command(["bash", "-c", command], self.environment(name)))
        started = time.monotonic()
        try:
            done = subprocess.run(argv, env=environment, cwd=self.run_dir.path,
                                  capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
            rc, stdout, stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as expired:
            rc, stdout = 124, _text(expired.stdout)
            stderr = _text(expired.stderr) + f"\ncalisim: command timed out after {timeout:.0f}s\n"
        return CommandResult(name, command, rc, stdout, stderr, round(time.monotonic() - started, 3))

    def run_in(self, name: str) -> Callable[..., subprocess.CompletedProcess]:
        """subprocess.run for a command line naming PIDs of host name (a probe inside one of its
        workloads): subprocess.run itself here, Cluster.run on the host's server for a remote host."""
        if self.on_servers is None or not self.on_servers.is_remote(name):
            return subprocess.run

        def run_there(argv: list[str], timeout: float = DEFAULT_TIMEOUT, **_options) -> subprocess.CompletedProcess:
            result = self.run(name, shlex.join(argv), timeout)
            return subprocess.CompletedProcess(argv, result.rc, result.stdout, result.stderr)
        return run_there

    def emulation_environment(self) -> dict[str, str]:
        """The environment of `lab$` steps: calisim's own commands first on PATH, and the control
        socket (the lab's, or the one a transcript run serves) that `calisim fault` talks to."""
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        return {**os.environ, "PATH": path, CONTROL_SOCKET_ENV: str(self.run_dir.path / CONTROL_SOCKET)}

    def run_everywhere(self, command: str, timeout: float = DEFAULT_TIMEOUT, parallel: int = 8) -> list[CommandResult]:
        """Run command on every Calico host, at most parallel at a time."""
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(self.hosts)))) as pool:
            return list(pool.map(lambda name: self.run(name, command, timeout), self.hosts))

    def start_nodes(self, timeout: float = DEFAULT_TIMEOUT, options: str = "") -> list[CommandResult]:
        """`calicoctl node run [options]` on every Calico host, in parallel (e.g. options "--ip6 autodetect"),
        then the topology's own steps (mesh off, bgpPeers, route reflectors: ``CalicoTopo.after_node_run``);
        ClusterError if one fails."""
        finished: list[str] = []

        def node_run(name: str) -> CommandResult:
            result = self.run(name, f"{self.topo.node_run_command(name)} {options}".rstrip(), timeout)
            finished.append(name)
            self.progress("nodes started", len(finished), len(self.hosts))
            return result

        with ThreadPoolExecutor(max_workers=max(1, min(NODE_RUN_PARALLEL, len(self.hosts)))) as pool:
            results = list(pool.map(node_run, self.hosts))
        failed = [r for r in results if r.rc != 0]
        if failed:
            raise ClusterError("calicoctl node run failed on " + "; ".join(
                f"{r.host}: {(r.stdout + r.stderr).strip()}" for r in failed))
        for host, command in self.topo.after_node_run():
            result = self.run(host, command, timeout)
            results.append(result)
            if result.rc != 0:
                raise ClusterError(f"{host}$ {command} failed: {(result.stdout + result.stderr).strip()}")
        return results

    def datastore(self) -> Synchronous:
        """A blocking client of the cluster's etcd over its members' unix sockets (never over the network)."""
        if not self.etcd_processes:
            raise ClusterError("etcd is not running")
        return Synchronous(Datastore(self.etcd_unix_endpoints))

    def bird(self, name: str) -> bird.BirdControl:
        return bird.BirdControl(self.host_socket(name, self.host(name).state_dir / "run" / "bird.ctl"))

    def host_socket(self, name: str, path: Path) -> Path:
        """A local path reaching the unix socket path of host name: path itself, or for a host on
        another server its end forwarded over that server's ssh."""
        if self.on_servers is not None and self.on_servers.is_remote(name):
            return self.on_servers.socket_of(self.host(name), path)
        return path

    def bgp_established(self, name: str) -> int:
        """How many Calico BGP sessions of host name are Established (0 if BIRD is not up)."""
        try:
            return sum(p.info.startswith("Established") for p in bird.bgp_peer_statuses(self.bird(name).protocols()))
        except bird.BirdError:
            return 0

    def expected_sessions(self) -> dict[str, int]:
        """Each Calico host -> the BGP sessions its config says should come up (every other host
        with the mesh on; its ToR in a fabric; the reflectors behind route reflectors); a host not
        registered in etcd yet is missing."""
        with self.datastore() as ds:
            entries = {entry.key: entry.value for prefix in (keys.BGP_GLOBAL, keys.BGP_HOSTS)
                       for entry in ds.list(prefix)}
        by_ip = bird.expected_sessions(entries)
        return {name: by_ip[self.topo.host_ip(name)] for name in self.hosts if self.topo.host_ip(name) in by_ip}

    def wait_for_mesh(self, timeout: float = 60.0) -> None:
        """Poll until every host's BGP sessions (expected_sessions) are Established, all in one last
        round; before it, only hosts not yet seen complete are asked (all 100 BIRDs' 99 sessions a
        round took CPU from those coming up).  etcd is read only while a host is missing from it."""
        lagging: list[str] = []
        expected: dict[str, int] = {}
        up: dict[str, int] = {}
        behind = list(self.hosts)

        def complete(host: str) -> bool:
            up[host] = self.bgp_established(host) if host in expected else 0
            return host in expected and up[host] >= expected[host]

        def settled() -> bool:
            if len(expected) < len(self.hosts):
                try:
                    expected.update(self.expected_sessions())
                except DatastoreError as error:
                    lagging[:] = [f"etcd unreadable: {error}"]
                    return False
            behind[:] = [h for h in behind if not complete(h)] or [h for h in self.hosts if not complete(h)]
            lagging[:] = [f"{h} {up[h]}/{expected[h]}" if h in expected else f"{h} unregistered" for h in behind]
            self.progress("hosts with every BGP session up", len(self.hosts) - len(behind), len(self.hosts))
            return not behind

        try:
            wait_until(settled, timeout, interval=0.2, what=f"the BGP sessions of {len(self.hosts)} hosts")
        except ClusterError as error:
            raise ClusterError(f"{error} (Established/expected: {', '.join(lagging)})") from None

    def cli(self, commands=None) -> None:
        """Mininet's CLI on the cluster, every command's output on standard output.

        `host1 calicoctl node status` runs in host1's own shell, which gets the environment of
        Cluster.run first (PATH with calicoctl and docker, ETCD_ENDPOINTS, DOCKER_HOST, its home
        directory).  Commands come from the terminal, or, when standard input is not one, are
        read from it whole and run as a script: Mininet's CLI would otherwise feed the lines
        after a command to that command's shell.
        """
        from mininet.cli import CLI
        from mininet.log import lg

        commands = sys.stdin if commands is None else commands
        for name in self.topo.hosts(sort=True):
            exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in self.environment(name).items())
            self.host(name).cmd(f"export {exports}; cd {shlex.quote(str(self.host(name).home))}")
        lg.handlers[0].setStream(sys.stdout)
        setLogLevel("output")
        try:
            if commands.isatty():
                CLI(self.net, stdin=commands)
            else:
                script = self.run_dir.path / "cli-commands.txt"
                script.write_text(commands.read())
                idle, keep_open = os.pipe()  # never readable: nothing is typed into a running command
                try:
                    with os.fdopen(idle) as never_typed:
                        CLI(self.net, stdin=never_typed, script=str(script))
                finally:
                    os.close(keep_open)
        finally:
            sys.stdout.flush()
            setLogLevel("error")

    def diagnose(self) -> Path:
        """Write what each host's dataplane, BIRD and calico-node look like now to diagnostics.txt
        in the run directory (for reading after a failure) and return its path.  Whether a node
        runs BIRD is asked of the node itself (its socket in its /var/run/calico): a router on
        another server has its run directory there, not here.  Nodes are read at once (a remote
        node's commands are ssh round trips)."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            sections = [section for found in pool.map(self._node_diagnostics, self.topo.hosts(sort=True))
                        for section in found]
        path = self.run_dir.path / "diagnostics.txt"
        path.write_text("\n".join(sections))
        return path

    def _node_diagnostics(self, name: str) -> list[str]:
        has_bird = self.run(name, "test -S /var/run/calico/bird.ctl", timeout=10).rc == 0
        commands = DIAGNOSTICS + (CALICO_DIAGNOSTICS if name in self.hosts else BIRD_DIAGNOSTICS if has_bird else ())
        return [f"### {name}$ {command}\n{result.stdout}{result.stderr}"
                for command in commands for result in [self.run(name, command, timeout=10)]]


def _all_established(control: bird.BirdControl) -> bool:
    try:
        sessions = [p for p in control.protocols() if p.proto == "BGP"]
    except bird.BirdError:
        return False
    return all(p.info.startswith("Established") for p in sessions)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
