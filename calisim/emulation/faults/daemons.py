"""Faults of daemons: kill, term, stop and cont sent to a host's calico-node, BIRD, dockerd, etcd
or route reflector (their PIDs from their pid files or the cluster), and start for one a fault
took down, as the cluster started it."""

from __future__ import annotations

import json
import shlex
import signal
import time

from ...node import NodePaths
from ...node.bird import Bird
from ...node.daemon import NodeDaemon
from ...process import pids
from . import servers
from .base import FaultError, FaultState

DAEMONS = ("bird", "calico-node", "dockerd", "etcd", "routereflector")
LEADER_WAIT = 10.0  # seconds for an election (1-2 s at etcd's timers) before a leader fault is refused
SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "stop": signal.SIGSTOP, "cont": signal.SIGCONT}


class DaemonFaults(FaultState):
    """Signals to daemons, and daemons started again."""

    def kill(self, host: str, daemon: str) -> None:
        self.signal(host, daemon, "kill")

    def term(self, host: str, daemon: str) -> None:
        self.signal(host, daemon, "term")

    def stop(self, host: str, daemon: str) -> None:
        self.signal(host, daemon, "stop")

    def cont(self, host: str, daemon: str) -> None:
        self.signal(host, daemon, "cont")

    def signal_leader(self, verb: str) -> str:
        """Send kill/term/stop/cont to etcd in whichever node leads the cluster now (after a
        leader's loss, the one the others elect); returns that node."""
        deadline = time.monotonic() + LEADER_WAIT
        while (leader := self.cluster.etcd_leader()) is None:
            if time.monotonic() > deadline:
                raise FaultError(f"the etcd cluster has had no leader for {LEADER_WAIT:.0f} s (no quorum?)")
            time.sleep(0.1)
        self.signal(leader, "etcd", verb)
        return leader

    def signal(self, host: str, daemon: str, verb: str) -> None:
        """Send kill/term/stop/cont to a daemon of host.  BIRD comes back by itself (calico-node
        restarts it, as runit does), and so does a route reflector's BIRD (daemon
        ``routereflector``: runit in calico/routereflector, our reflector process here);
        calico-node is started again at once (its BIRD dies with it on kill, as everything in a
        killed calico/node container does); etcd and dockerd stay down until ``start``."""
        if verb not in SIGNALS:
            raise FaultError(f"unknown signal verb {verb!r} (use {', '.join(SIGNALS)})")
        pid = self._daemon_pid(host, daemon)
        node = self._node(host)
        if daemon == "calico-node" and verb in ("kill", "term"):
            self.node_commands[host] = node_run_command(servers.cmdline(node, pid), self._node_settings(host))
        bird_pid = self._bird_pid(host) if daemon == "calico-node" and verb == "kill" else None
        servers.send(node, pid, SIGNALS[verb])
        if bird_pid is not None:  # (perhaps killed a moment ago, in calico-node's 1 s pause before restarting it)
            servers.send(node, bird_pid, signal.SIGKILL)
        self._record(f"{verb} {host} {daemon} (pid {pid})")
        if verb == "stop":
            self.daemons[(host, daemon)] = "stopped"
        elif verb == "cont":
            self.daemons.pop((host, daemon), None)
        elif daemon in ("etcd", "dockerd"):
            servers.wait_gone(node, pid)
            if daemon == "dockerd":
                self._forget_remote_dockerd(host)
            self.daemons[(host, daemon)] = "down"
        elif daemon == "calico-node":
            servers.wait_gone(node, pid)
            self.daemons[(host, daemon)] = "down"
            self.start(host, daemon)
        self._save()

    def start(self, host: str, daemon: str) -> None:
        """Start a daemon of host that a fault took down, as the cluster started it."""
        self._check_daemon(host, daemon)
        if daemon == "bird":
            raise FaultError("bird is started by calico-node (start calico-node instead)")
        if self._running_pid(host, daemon) is not None:
            raise FaultError(f"{daemon} is already running in {host}")
        if daemon == "etcd":
            self.cluster.start_etcd(host)
        elif daemon == "dockerd":
            self.cluster.start_dockerd(host)
        elif daemon == "routereflector":
            self._run_or_refuse(host, daemon, self.cluster.topo.reflector_run_command(host))
        else:
            self._run_or_refuse(host, daemon, self.node_commands.get(host, "calicoctl node run"))
        self.daemons.pop((host, daemon), None)
        self._record(f"start {host} {daemon}")

    def _run_or_refuse(self, host: str, daemon: str, command: str) -> None:
        done = self.cluster.run(host, command, timeout=90)
        if done.rc != 0:
            self._save()
            raise FaultError(f"{daemon} in {host} did not start: {(done.stdout + done.stderr).strip()[-300:]}")

    def _check_daemon(self, host: str, daemon: str) -> None:
        self._node(host)
        if daemon not in DAEMONS:
            raise FaultError(f"unknown daemon {daemon!r} (one of {', '.join(DAEMONS)})")
        etcd_nodes = self.cluster.topo.etcd_nodes()
        if daemon == "etcd" and host not in etcd_nodes:
            raise FaultError(f"etcd does not run in {host} (it runs in {', '.join(etcd_nodes)})")
        if host in self.cluster.topo.etcd_members():
            if daemon != "etcd":
                raise FaultError(f"{host} is an etcd member, not a Calico host: its only daemon is etcd")
            return
        reflectors = self.cluster.topo.reflector_hosts()
        if daemon == "routereflector":
            if host not in reflectors:
                raise FaultError(f"routereflector does not run in {host} ("
                                 + (f"the route reflectors are {', '.join(reflectors)})" if reflectors
                                    else "this topology has no route reflectors)"))
            return
        if host in reflectors:
            raise FaultError(f"{host} is a route reflector, not a Calico host: its BIRD is the daemon routereflector")
        self._calico_host(host)

    def _daemon_pid(self, host: str, daemon: str) -> int:
        self._check_daemon(host, daemon)
        pid = self._running_pid(host, daemon)
        if pid is None:
            raise FaultError(f"{daemon} is not running in {host}")
        return pid

    def _running_pid(self, host: str, daemon: str) -> int | None:
        if daemon in ("bird", "routereflector"):
            return self._bird_pid(host)
        if daemon == "calico-node":
            return self._pid_from_file(host, NodeDaemon(self._paths(host)).pid_file)
        node = self._node(host)
        if servers.on_other_server(node):
            if daemon == "etcd":
                raise servers.not_yet(node, "etcd faults")
            process = self.cluster.on_servers.daemons.get(host)
            return process.pid if process is not None and servers.alive(node, process.pid) else None
        process = (self.cluster.dockerds if daemon == "dockerd" else self.cluster.etcd_processes).get(host)
        return process.pid if process is not None and pids.alive(process.pid) else None

    def _bird_pid(self, host: str) -> int | None:
        return self._pid_from_file(host, Bird(self._paths(host)).pid_file)

    def _pid_from_file(self, host: str, pid_file) -> int | None:
        """The live PID a pid file of host names, both read on host's server."""
        node = self._node(host)
        if servers.on_other_server(node):
            return self.cluster.on_servers.running_pid(node, pid_file)
        return pids.from_file(pid_file)

    def _node_settings(self, host: str) -> dict[str, str]:
        """The NODE_SETTINGS host's calico-node was started with (read on its server)."""
        daemon = NodeDaemon(self._paths(host))
        if not servers.on_other_server(self._node(host)):
            return daemon.settings()
        try:
            return json.loads(servers.read_text(self._node(host), daemon.settings_file))
        except ValueError:
            return {}

    def _forget_remote_dockerd(self, host: str) -> None:
        """A remote dockerd gone (start has its server's zygote fork a new one)."""
        if self.cluster.on_servers is not None:
            self.cluster.on_servers.daemons.pop(host, None)

    def _paths(self, host: str) -> NodePaths:
        state = self.cluster.host(host).state_dir
        return NodePaths(state / "run", state / "log")


NODE_RUN_OPTIONS = ("--name", "--ip", "--ip6", "--ip6-autodetection-method", "--as", "--backend")  # with a value


def node_run_command(argv: list[str], settings: dict[str, str] | None = None) -> str:
    """The `calicoctl node run` that starts a calico-node with argv and its environment's settings
    again: its name, addresses of both versions (an IPv6 one autodetected by the same method), AS,
    backend and default pools, and before it settings such as FELIX_IPV6SUPPORT=false."""
    options, words = [], argv[argv.index("calisim.node") + 1:]
    for index, word in enumerate(words):
        if word in NODE_RUN_OPTIONS:
            options += [word, shlex.quote(words[index + 1])]
        elif word == "--no-default-ippools":
            options.append(word)
    environment = [f"{name}={shlex.quote(value)}" for name, value in sorted((settings or {}).items())]
    return " ".join([*environment, "calicoctl node run", *options])
